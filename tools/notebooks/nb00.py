import sys; sys.path.insert(0, "tools")
from nbbuild import md, code, write

cells = [
md("""
# 00 · The course model

Every lesson of this course runs on a real, trained language model: a small decoder-only
transformer (仅解码器 Transformer) that `llmtap` pretrains itself on a synthetic bilingual
corpus and ships as a 3.6 MB file. This notebook is the tour:

1. the tokenizer (分词器) on Chinese and English;
2. the model, and text generation (生成) with temperature and top-k;
3. a short training run from scratch, with a live loss plot;
4. the capability report: what the shipped model can and cannot do;
5. how the corpus (语料) is made.

Three graded exercises are on the way: the causal mask, sampling with temperature and top-k,
and the next-token loss. Each has a checker cell right below it.
"""),
code("""
# Colab: install llmtap when it is missing (Colab's own PyTorch is kept).
import importlib.util
if importlib.util.find_spec("llmtap") is None:
    %pip install -q "llmtap @ git+https://github.com/llmtap/llmtap"
"""),
code("""
# NBVAL_IGNORE_OUTPUT
import random
import time

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

import llmtap
from llmtap import corpus
from llmtap.widgets import plot_text

torch.manual_seed(0)
random.seed(0)
device = llmtap.pick_device()          # cuda, then mps, then cpu
print("device:", device, "| torch", torch.__version__)
"""),
md("""
## 1. The tokenizer

A language model reads integers, not text. `llmtap.Tokenizer` is character-level (字符级):
each Chinese character and each English letter the corpus uses is one token. Any other
character (an emoji, a rare character) is spelled as its UTF-8 bytes, one token per byte, so
**every** string survives the round trip `decode(encode(s)) == s`. Three special tokens come
first: `<pad>` (0), `<bos>` (1, the beginning of a sequence) and `<eos>` (2, the end of a document).
"""),
code("""
# NBVAL_CHECK_OUTPUT
model, tok = llmtap.load_course_model(device)
print(tok)
for text in ["我感到太好了。", "I feel great.", "火车→乙"]:
    ids = tok.encode(text)
    print(f"{text!r:>16} -> {ids}")
"""),
code("""
# NBVAL_CHECK_OUTPUT
text = "Emoji 🙂 and 龘 are not in the vocabulary."
ids = tok.encode(text)
print(len(text), "characters ->", len(ids), "tokens")
print([tok.id_to_piece(i) for i in ids[6:11]])
assert tok.decode(ids) == text
print("round trip exact:", tok.decode(ids) == text)
"""),
md("""
The emoji is one character but four UTF-8 bytes, so it costs four tokens. A real LLM's
byte-level BPE works the same way underneath, but merges frequent byte sequences into
larger tokens; with our small alphabet, characters are enough.

## 2. The model

`llmtap.model` is a GPT in the style of nanoGPT: token embeddings, a stack of blocks
(attention, then an MLP, each inside a residual connection, 残差连接), and a final projection
back to the vocabulary whose weight is shared with the token embedding. The course model
encodes positions with rotary embeddings (RoPE, 旋转位置编码), as Llama does: each query and
key is rotated by an angle proportional to its position, so attention scores depend on the
distance between tokens. Chapter 04 compares RoPE with learned, sinusoidal and ALiBi positions.
"""),
code("""
# NBVAL_CHECK_OUTPUT
print(model.config)
print(f"{model.num_params():,} parameters")
"""),
code("""
print(model.h[0])
"""),
md("""
### Exercise 1: the causal mask (因果掩码)

A decoder-only model predicts token t+1 from tokens 0..t, so query position i may attend to
key position j only when j ≤ i. Write `causal_mask(T)`: a `(T, T)` bool tensor that is `True`
where attention is allowed. (The model itself passes `is_causal=True` to
`F.scaled_dot_product_attention`, which applies exactly this mask inside a fused kernel.)
"""),
code("""
def causal_mask(T):
    ### BEGIN SOLUTION
    return torch.ones(T, T, dtype=torch.bool).tril()
    ### END SOLUTION
"""),
code("""
# NBVAL_CHECK_OUTPUT
from llmtap.checks import check_causal_mask
_ = check_causal_mask(causal_mask)
"""),
md("""
With a mask in hand we can check that our mask and the fused causal kernel agree on random
queries, keys and values:
"""),
code("""
q, k, v = torch.randn(3, 1, 2, 6, 8).unbind(0)        # (batch, heads, T, head_dim)
try:
    mine = F.scaled_dot_product_attention(q, k, v, attn_mask=causal_mask(6))
    fused = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    print("same attention output:", torch.allclose(mine, fused, atol=1e-6))
except NotImplementedError:
    print("solve exercise 1 first")
"""),
md("""
### Generation

Generation repeats one step: run the model, turn the last position's logits into a
distribution, pick a token, append it. `model.generate` keeps a **KV cache** (键值缓存): the
keys and values of earlier tokens are stored, so each new token costs one position of work
instead of re-reading the whole prompt.

With temperature 0 the model always takes the most likely token (greedy decoding):
"""),
code("""
# NBVAL_IGNORE_OUTPUT
def complete(prompt, n=12, **kw):
    ids = torch.tensor([tok.encode(prompt, bos=True)], device=device)
    out = model.generate(ids, n, eos_id=tok.eos_id, **kw)
    return tok.decode(out[0, ids.shape[1]:]).split("\\n")[0]

for prompt in ["昨天我在公园里丢了钱包。我感到", "This morning, I won the lottery at home. I feel",
               "香蕉是一种", "cello is a kind of"]:
    print(f"{prompt} ⟶ {complete(prompt, temperature=0)!r}")
"""),
md("""
### Exercise 2: temperature and top-k sampling (温度与 top-k 采样)

Greedy decoding always says the same thing. Sampling draws the next token from
softmax(logits / T): a temperature T < 1 sharpens the distribution, T > 1 flattens it, and
T → 0 becomes greedy. Top-k sampling first keeps only the k largest logits (the rest get
probability 0). Write `sample_next(logits, temperature, top_k, generator)` for `logits` of shape
`(B, vocab)`, returning `(B,)` token ids: temperature 0 means argmax; `top_k=None` means no
cut; draw with `torch.multinomial(probs, 1, generator=generator)`.
"""),
code("""
def sample_next(logits, temperature=1.0, top_k=None, generator=None):
    ### BEGIN SOLUTION
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits / temperature
    if top_k is not None:
        kth_largest = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth_largest, float("-inf"))
    probs = F.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)
    ### END SOLUTION
"""),
code("""
# NBVAL_CHECK_OUTPUT
from llmtap.checks import check_sample_next
_ = check_sample_next(sample_next)
"""),
md("""
How temperature reshapes the next-token distribution after `Yesterday, I ` (many events
can follow, so the model is genuinely unsure). The library's `llmtap.model.sample_next` is the
reference implementation of your exercise.
"""),
code("""
# NBVAL_IGNORE_OUTPUT
from llmtap.widgets import next_token_probs
fig, axes = plt.subplots(1, 3, figsize=(11, 2.8), sharey=True)
for ax, T in zip(axes, [0.5, 1.0, 2.0]):
    pieces, probs = next_token_probs(model, tok, "Yesterday, I ", temperature=T, top=8)
    ax.bar(range(len(pieces)), probs, color="tab:orange")
    ax.set_xticks(range(len(pieces)), [plot_text(repr(p)) for p in pieces])
    ax.set_title(f"T = {T}")
axes[0].set_ylabel("probability")
plt.tight_layout(); plt.show()
"""),
code("""
# NBVAL_IGNORE_OUTPUT
g = torch.Generator().manual_seed(0)
for T, k in [(0.7, None), (1.0, 5), (1.5, None)]:
    samples = [complete("Yesterday, I", 30, temperature=T, top_k=k, generator=g) for _ in range(2)]
    print(f"T={T}, top_k={k}:", samples)
"""),
md("""
Try it yourself: type a prompt and move the temperature slider.
"""),
code("""
# NBVAL_IGNORE_OUTPUT
from llmtap.widgets import next_token_explorer
explorer = next_token_explorer(model, tok)
"""),
md("""
## 3. Training: the next-token loss

Pretraining (预训练) minimises the cross-entropy of every next token:
L = −(1/N) Σ_t log P(x_{t+1} | x_≤t). The logits at position t are compared with the token at
position t+1, so logits and targets are the same sequence shifted by one.

### Exercise 3: the next-token loss

Write `next_token_loss(logits, idx)` for logits `(B, T, V)` computed from token ids `idx`
`(B, T)`: the mean cross-entropy of predicting `idx[:, t+1]` from position t.
"""),
code("""
def next_token_loss(logits, idx):
    ### BEGIN SOLUTION
    V = logits.size(-1)
    return F.cross_entropy(logits[:, :-1].reshape(-1, V), idx[:, 1:].reshape(-1))
    ### END SOLUTION
"""),
code("""
# NBVAL_CHECK_OUTPUT
from llmtap.checks import check_next_token_loss
_ = check_next_token_loss(next_token_loss)
"""),
md("""
On a batch of corpus text the shipped model's loss is far below that of a fresh model with
random weights, whose loss is about ln(vocab size): a uniform guess.
"""),
code("""
# NBVAL_IGNORE_OUTPUT
from llmtap.pretrain import corpus_batches
x, y = next(corpus_batches(tok, 128, 8, seed=123))
x = x.to(device)
fresh = llmtap.GPT(model.config).to(device).eval()
with torch.no_grad():
    for name, m in [("shipped model", model), ("random weights", fresh)]:
        try:
            loss = next_token_loss(m(x)[0], x).item()
        except NotImplementedError:
            loss = m(x, y.to(device))[1].item()
        print(f"{name:>15}: {loss:.3f} nats/token")
import math; print(f"    ln(vocab) = {math.log(tok.vocab_size):.3f}")
"""),
md("""
### A short training run, live

`llmtap.train` is the whole training loop: AdamW, a linear warm-up then a cosine learning-rate
schedule, gradient clipping, autocast on a GPU, and a progress bar. Here a small model learns
from scratch for about twenty seconds on the CPU (more steps on a GPU); watch the loss fall:
fast at first, while it learns which characters are common and which words they make, then
slowly, as what is left to learn gets harder.
"""),
code("""
# NBVAL_IGNORE_OUTPUT
from llmtap.widgets import LiveLossPlot
from llmtap.pretrain import course_config
torch.manual_seed(0)
small = llmtap.GPT(course_config(tok.vocab_size, n_layer=2, n_embd=64, n_head=4, block_size=128))
steps = 1500 if device.type == "cuda" else 300
plot = LiveLossPlot("a 2-layer model learning the corpus")
history = llmtap.train(small, corpus_batches(tok, 128, 16, seed=0),
                       llmtap.TrainConfig(steps=steps, lr=3e-3, warmup_steps=20, log_every=10),
                       on_log=plot.update, device=device)
print(f"{steps} steps in {history['seconds']:.1f} s; loss {history['loss'][0]:.2f} -> {history['loss'][-1]:.2f}")
"""),
code("""
# NBVAL_IGNORE_OUTPUT
ids = torch.tensor([tok.encode("昨天", bos=True)], device=device)
print("after training:", tok.decode(small.generate(ids, 40, temperature=0)[0]))
print("course model:  ", tok.decode(model.generate(ids, 40, temperature=0)[0]))
"""),
md("""
The shipped model went through the same loop for much longer (`python -m llmtap.pretrain`,
about 20–25 minutes on a 2-core CPU). The checkpoint is a safetensors file: plain tensors plus a
JSON header, loaded without running any code (a pickled `.pt` file could run arbitrary code
when loaded, so llmtap refuses it).

## 4. The capability report

What does the shipped model know? `python -m llmtap.pretrain --report` measures it on
held-out data, and so does this cell:

* **sentiment**: zero-shot prompt classification (提示学习) of event sentences it never saw,
  e.g. `上周末我在海边摔断了腿。我感到[Z]`: each answer z of Z = {太好了, 好, 一般, 不好, 糟糕}
  is scored by the model, the best one is mapped to positive / neutral / negative (chapter 01);
* **in-context learning** (上下文学习) on *fresh random mappings*: lines like `苹果 → 乙` whose
  labels are drawn anew for every prompt, so the answer can only be copied from the k
  demonstrations (k = 0 must be at chance); `heldout_items` uses query words that never
  appeared in any mapping during pretraining.
"""),
code("""
# NBVAL_IGNORE_OUTPUT
from llmtap.pretrain import capability_report, format_report
t0 = time.perf_counter()
report = capability_report(model, tok, n=150)
print(format_report(report))
print(f"({time.perf_counter() - t0:.1f} s)")
"""),
code("""
# NBVAL_IGNORE_OUTPUT
ks = [0, 1, 2, 4, 8]
fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3), gridspec_kw={"width_ratios": [1, 2]})
a1.bar(["zh", "en"], [report["sentiment_zh"], report["sentiment_en"]], color="tab:green")
a1.axhline(1 / 3, ls="--", c="gray"); a1.set(ylim=(0, 1), title="zero-shot sentiment", ylabel="accuracy")
a2.plot(ks, [report[f"icl_k{k}"] for k in ks], marker="o")
a2.axhline(1 / 3, ls="--", c="gray", label="chance"); a2.legend()
a2.set(ylim=(0, 1.02), xticks=ks, xlabel="demonstrations k", title="in-context learning, fresh mappings")
plt.tight_layout(); plt.show()
"""),
code("""
# NBVAL_CHECK_OUTPUT
# The minimums the course relies on (chapter 01 builds on them).
assert report["sentiment_zh"] >= 0.9 and report["sentiment_en"] >= 0.9
assert report["icl_k0"] < 0.5 < 0.85 <= report["icl_k4"]
print("capability minimums hold")
"""),
md("""
## 5. How the corpus is made

`llmtap.corpus` writes the model's whole world from word lists and templates, all seeded.
Each pretraining document comes from one generator:
"""),
code("""
# NBVAL_CHECK_OUTPUT
rng = random.Random(7)
print("mixture:", corpus.MIXTURE)
generators = {"sentiment": corpus.sentiment_document, "category": corpus.category_document,
              "mapping": corpus.mapping_document, "repeat": corpus.repeat_document}
for kind, make in generators.items():
    print(f"\\n--- {kind}")
    for lang in corpus.LANGS:
        print(make(rng, lang).replace("\\n", " | "))
"""),
md("""
* **Sentiment** sentences combine a time, a place and one of 40 events with a level from −2
  to +2; the answer words of Z express the level. One combination in five is **held out**:
  it never appears in pretraining and is what the report tests on.
* **Category facts and lists** (`芒果是一种水果。`, `动物：狐狸、猫、马。`) teach which words
  belong together.
* **Mapping sequences** (shown here with ` | ` for the line breaks) draw 3 label words at
  random for every sequence: nothing but the context tells which label goes with which
  category. Two items of each category are kept out of mapping sequences, to test whether
  the skill transfers to words the model met only in facts and lists.
* **Repeats** are a random string of label words written twice. The second copy can only be
  predicted by looking back: this is the simplest lesson in copying from context, and it
  makes the model's "induction heads" (attention heads that find the earlier occurrence of
  the current pattern and copy what followed it) form early in training. Without repeats,
  and with learned positions instead of rotary ones, a model of this size trained for the
  same 2400 steps stayed at chance on in-context mappings: it had learnt which three labels a
  sequence uses, but not which goes with which.

The same generators also write instruction/response pairs (for supervised fine-tuning in
chapter 05) and long filler text with a hidden pass key (for context length in chapter 04):
"""),
code("""
# NBVAL_CHECK_OUTPUT
rng = random.Random(0)
for task in corpus.INSTRUCTION_TASKS:
    print(corpus.instruction_example(rng, "zh" if task in ("add", "list") else "en", task))
prompt, key = corpus.passkey_sample(rng, n_chars=160, depth=0.5)
print(prompt, "| answer:", key)
"""),
code("""
# NBVAL_CHECK_OUTPUT
combos = [(e, t, p) for e in range(len(corpus.EVENTS)) for t in range(len(corpus.TIMES))
          for p in range(len(corpus.PLACES))]
held = sum(corpus._is_heldout(*c) for c in combos)
print(f"{len(combos)} (event, time, place) combinations per language, {held} held out ({held / len(combos):.0%})")
print("held-out mapping items:", [corpus.category_items(c, "en", "test") for c in range(3)], "...")
"""),
md("""
## What's next

* **01** uses this model for prompt learning and in-context learning;
* **02–03** adapt it with LoRA, adapters, prefix and prompt tuning;
* **04** trains siblings with different position encodings and stretches their context;
* **05** builds instruction data and fine-tunes it to follow instructions.
"""),
]
write("solutions/00_course_model.ipynb", cells)

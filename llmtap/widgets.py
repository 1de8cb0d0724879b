"""Interactive helpers for the notebooks: a live loss plot and small ipywidgets explorers.

Each explorer is built by ``live_view``: controls above an output area that is drawn again
whenever a control moves. They work with ipywidgets 7.7 (what Colab ships) and 8. Importing
this module imports ``llmtap.plots``, which gives matplotlib the course's Chinese font.
"""
from __future__ import annotations

import math
import os

import ipywidgets as w
import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from IPython.display import display

from . import plots  # noqa: F401  (registers the course's Chinese font with matplotlib)
from .positions import alibi_bias, alibi_slopes, rope_inv_freq
from .prompting import PromptClassifier, Verbalizer
from .rouge import rouge_filter_scores

# Set by ``python -m llmtap.course execute``: each explorer also draws its first view as a plain
# figure, which is saved with the notebook, so a reader without a kernel (GitHub, a static viewer)
# sees every analysis; a widget's live output is never saved.
STATIC_COPY = "LLMTAP_STATIC_COPY"
FIT_LABEL = {"description_width": "initial"}    # a control's description shown whole, not cut to "temperat…"
TITLE_CHARS = 70                                # longer plot titles are cut, with an ellipsis


class LiveLossPlot:
    """A loss curve that redraws in place while training runs: pass ``plot.update`` as ``on_log``."""

    def __init__(self, title: str = "training loss", ylabel: str = "cross-entropy (nats/token)"):
        self.steps, self.losses = [], []
        self.fig, self.ax = plt.subplots(figsize=(6, 3.2))
        self.title, self.ylabel = title, ylabel
        self._draw()
        self.handle = display(self.fig, display_id=True)
        plt.close(self.fig)          # we redraw through the display handle, not the inline backend

    def _draw(self):
        self.ax.clear()
        self.ax.plot(self.steps, self.losses, marker=".", color="tab:blue")
        self.ax.set(title=self.title, xlabel="step", ylabel=self.ylabel)
        self.ax.grid(alpha=0.3)
        self.fig.tight_layout()

    def update(self, step: int, loss: float) -> None:
        self.steps.append(step)
        self.losses.append(loss)
        self._draw()
        if self.handle is not None:
            self.handle.update(self.fig)


def ipywidgets_major() -> int:
    """The major version of the installed ipywidgets (7 on Colab, 8 elsewhere)."""
    return int(w.__version__.split(".")[0])


_colab_manager_enabled = False


def enable_colab_widget_manager() -> bool:
    """On Colab with ipywidgets 8, switch on Colab's custom widget manager, without which those
    widgets do not render (ipywidgets 7, Colab's own, needs nothing). Does it once; returns
    whether it was switched on by this or an earlier call."""
    global _colab_manager_enabled
    if not _colab_manager_enabled and ipywidgets_major() >= 8:
        try:
            from google.colab import output     # here, not at the top: it exists only on Colab
        except ImportError:
            return False
        output.enable_custom_widget_manager()
        _colab_manager_enabled = True
    return _colab_manager_enabled


def shorten(text: str, limit: int = TITLE_CHARS) -> str:
    """``text`` cut to at most ``limit`` characters, the last an ellipsis when it was cut."""
    if limit < 2:
        raise ValueError(f"limit must be at least 2 (one character and the ellipsis), got {limit}")
    return text if len(text) <= limit else text[:limit - 1] + "…"


def live_view(rows, draw):
    """Controls above an output area: ``draw()`` runs now and again whenever a control changes.

    ``rows`` lists the controls top to bottom; a list inside it is one row (an HBox). Returns the
    displayed VBox, whose children are those rows and then the output area. With the environment
    variable LLMTAP_STATIC_COPY=1 the first view is drawn once more as a plain, saved figure."""
    # Every explorer shows its widgets through here: the one place to prepare Colab before the
    # first widget is displayed, and only once a notebook does show one.
    enable_colab_widget_manager()
    out = w.Output()

    def redraw(*_):
        with out:
            out.clear_output(wait=True)
            draw()

    for row in rows:
        for control in (row if isinstance(row, list) else [row]):
            control.observe(redraw, names="value")
    redraw()
    ui = w.VBox([w.HBox(row) if isinstance(row, list) else row for row in rows] + [out])
    display(ui)
    if os.environ.get(STATIC_COPY) == "1":
        draw()              # the first view again, into the cell's own output: saved with the notebook
    return ui


@torch.no_grad()
def next_token_probs(model, tokenizer, text: str, temperature: float = 1.0, top: int = 10):
    """The ``top`` most likely next tokens after ``text`` as (pieces, probabilities)."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0 for a distribution, got {temperature}")
    ids = torch.tensor([tokenizer.encode(text, bos=True)[-model.config.block_size:]], device=model.device)
    logits, _ = model(ids)
    probs = F.softmax(logits[0, -1].float() / temperature, dim=-1)
    p, i = probs.topk(top)
    return [tokenizer.id_to_piece(t) for t in i.tolist()], p.tolist()


# An unfinished category list: about ten animals can come next, so the distribution is spread
# out (top probability 0.19 at T = 1) and every move of the temperature reshapes it.
EXPLORER_PROMPT = "动物：狐狸、猫、"


def next_token_explorer(model, tokenizer, text: str = EXPLORER_PROMPT):
    """Type a prompt, move the temperature: the bar chart shows the next-token distribution."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str (the prompt), got {type(text).__name__}")
    box = w.Text(value=text, description="prompt", layout=w.Layout(width="95%"), style=FIT_LABEL)
    temp = w.FloatSlider(value=1.0, min=0.1, max=3.0, step=0.1, description="temperature", style=FIT_LABEL)

    def draw():
        pieces, probs = next_token_probs(model, tokenizer, box.value, temp.value)
        labels = [repr(p)[1:-1] for p in pieces]                 # repr shows "\n" and " "
        fig, ax = plt.subplots(figsize=(6, 3))
        ax.bar(range(len(pieces)), probs, color="tab:orange")
        ax.set_xticks(range(len(pieces)), labels, rotation=45 if max(map(len, labels)) > 3 else 0)
        prompt = shorten(box.value, TITLE_CHARS - 20)                       # cut the prompt, keep the T
        ax.set(ylim=(0, 1), ylabel="probability", title=f"after {prompt!r}, T = {temp.value:.1f}")
        plt.show()

    return live_view([box, temp], draw)


def prompt_classifier_demo(lm, templates: dict, verbalizers: dict, text: str = "我不小心错过了公共汽车。"):
    """Type a sentence, pick a template and a verbalizer: the bar chart shows P(label | x).

    ``templates`` and ``verbalizers`` map a display name to a template string and to a
    verbalizer (a dict label -> answers, or a ``Verbalizer``)."""
    if not templates or not verbalizers:
        raise ValueError("give at least one template and one verbalizer, each as a dict name -> value")
    verbalizers = {k: v if isinstance(v, Verbalizer) else Verbalizer(v) for k, v in verbalizers.items()}
    box = w.Text(value=text, description="x", layout=w.Layout(width="95%"), style=FIT_LABEL)
    pick_t = w.Dropdown(options=list(templates), description="template", style=FIT_LABEL)
    pick_v = w.Dropdown(options=list(verbalizers), description="verbalizer", style=FIT_LABEL)

    def draw():
        try:
            clf = PromptClassifier(lm, templates[pick_t.value], verbalizers[pick_v.value])
            probs = clf.predict_proba([box.value])[0].tolist()
        except (ValueError, TypeError) as e:      # say what is wrong with the input, keep the widget
            print(f"cannot classify this: {e}")
            return
        labels = clf.verbalizer.labels
        fig, ax = plt.subplots(figsize=(5, 2.6))
        ax.barh(labels, probs, color=["tab:red", "tab:gray", "tab:green"][:len(labels)] if len(labels) == 3
                else "tab:blue")
        for i, p in enumerate(probs):
            ax.text(min(p + 0.02, 0.85), i, f"{p:.0%}", va="center")
        ax.set(xlim=(0, 1), xlabel="P(label | x)",
               title=shorten(clf.template.prompt(box.value)))
        fig.tight_layout()
        plt.show()

    return live_view([box, [pick_t, pick_v]], draw)


def lora_explorer(grid: dict, full_spectrum=None):
    """Pick a rank r and an alpha: parameter count, accuracy and the singular values of the
    trained update ΔW = (alpha / r) B A, from runs done beforehand.

    ``grid`` maps (r, alpha) to a dict with "params" (trainable parameters), "accuracy" and
    "spectrum" (singular values of ΔW of one layer); ``full_spectrum`` (optional) is the same
    layer's update under full fine-tuning, drawn for comparison."""
    if not grid:
        raise ValueError("grid is empty: train LoRA for a few (r, alpha) pairs first")
    ranks = sorted({r for r, _ in grid})
    alphas = sorted({a for _, a in grid})
    pick_r = w.SelectionSlider(options=ranks, value=ranks[len(ranks) // 2], description="rank r", style=FIT_LABEL)
    pick_a = w.SelectionSlider(options=alphas, value=alphas[len(alphas) // 2], description="alpha", style=FIT_LABEL)

    def draw():
        run = grid.get((pick_r.value, pick_a.value))
        if run is None:
            print(f"no run for r={pick_r.value}, alpha={pick_a.value}; the grid has {sorted(grid)}")
            return
        fig, ax = plt.subplots(figsize=(6, 3))
        if full_spectrum is not None:
            ax.semilogy(range(1, len(full_spectrum) + 1), full_spectrum, color="gray", label="full fine-tuning")
        s = run["spectrum"]
        ax.semilogy(range(1, len(s) + 1), s, marker="o", color="tab:red", label=f"LoRA r={pick_r.value}")
        ax.set(xlabel="index i", ylabel="singular value σ_i of ΔW", xlim=(0, 40),
               title=f"{run['params']:,} trainable parameters, accuracy {run['accuracy']:.1%}")
        ax.legend()
        ax.grid(alpha=0.3)
        fig.tight_layout()
        plt.show()

    return live_view([[pick_r, pick_a]], draw)


# ----------------------------------------------------------------------------- chapter 03: PEFT methods compared
def peft_explorer(results: dict):
    """Pick a method and its size: trainable parameters and inference latency, from measurements
    made beforehand.

    ``results`` maps a method name to {size: {"params": trainable parameters, "percent": % of the
    model, "latency": inference time relative to the base model}}."""
    if not results or not all(isinstance(v, dict) and v for v in results.values()):
        raise ValueError("results must map each method to a non-empty dict size -> measurements")
    for method, sizes in results.items():
        for size, run in sizes.items():
            missing = {"params", "percent", "latency"} - set(run)
            if missing:
                raise ValueError(f"results[{method!r}][{size!r}] lacks {sorted(missing)}")
    methods = list(results)
    pick_m = w.Dropdown(options=methods, value=methods[0], description="method", style=FIT_LABEL)
    pick_s = w.SelectionSlider(options=list(results[methods[0]]), description="size", style=FIT_LABEL)

    def draw():
        run = results[pick_m.value].get(pick_s.value)
        if run is None:
            return
        others = {f"{m} ({next(iter(s))})": next(iter(s.values()))["latency"]      # each other method, first size
                  for m, s in results.items() if m != pick_m.value}
        names = ["base"] + list(others) + [f"{pick_m.value} ({pick_s.value})"]
        latencies = [1.0] + list(others.values()) + [run["latency"]]
        fig, ax = plt.subplots(figsize=(6, 0.45 * len(names) + 1))
        ax.barh(names, latencies, color=["tab:gray"] * (len(names) - 1) + ["tab:red"])
        ax.axvline(1.0, color="black", lw=0.8)
        ax.set(xlabel="inference time relative to the base model",
               title=f"{run['params']:,} trainable parameters ({run['percent']:.2f}% of the model)")
        fig.tight_layout()
        plt.show()

    def new_method(*_):
        pick_s.options = list(results[pick_m.value])

    pick_m.observe(new_method, names="value")
    return live_view([[pick_m, pick_s]], draw)


# ----------------------------------------------------------------------------- chapter 04: positions
def alibi_heatmaps(n_heads: int, length: int, max_panels: int = 8):
    """One heatmap per head of the ALiBi bias m_h * -(i - j) (query i down, key j across; the
    masked future left blank). Returns the figure. Heads beyond ``max_panels`` are skipped evenly."""
    if not isinstance(length, int) or length <= 0:
        raise ValueError(f"length must be a positive int, got {length!r}")
    slopes = alibi_slopes(n_heads)
    heads = sorted(set(torch.linspace(0, n_heads - 1, min(n_heads, max_panels)).round().long().tolist()))
    bias = alibi_bias(n_heads, length)
    bias = bias.masked_fill(~torch.ones(length, length, dtype=torch.bool).tril(), float("nan"))
    cols = min(4, len(heads))
    rows = (len(heads) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.5 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, h in zip(axes.flat, heads):
        ax.axis("on")
        im = ax.imshow(bias[h].numpy(), cmap="viridis", vmin=float(bias[h].nan_to_num(0).min()), vmax=0)
        ax.set_title(f"head {h + 1}: m = 1/{1 / slopes[h].item():.3g}", fontsize=9)
        ax.set_xlabel("key j", fontsize=8)
        ax.set_ylabel("query i", fontsize=8)
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle(f"ALiBi bias m_h·(j − i), {n_heads} heads, length {length}", fontsize=10)
    fig.tight_layout()
    return fig


def alibi_explorer(max_heads: int = 16, max_length: int = 64):
    """Sliders for the number of heads and the length: the ALiBi bias of each head as a heatmap."""
    if max_heads <= 0 or max_length <= 1:
        raise ValueError(f"need max_heads > 0 and max_length > 1, got {max_heads}, {max_length}")
    heads = w.IntSlider(value=min(8, max_heads), min=1, max=max_heads, description="heads", style=FIT_LABEL)
    length = w.IntSlider(value=min(16, max_length), min=2, max=max_length, description="length", style=FIT_LABEL)

    def draw():
        alibi_heatmaps(heads.value, length.value)
        plt.show()

    return live_view([[heads, length]], draw)


def rope_angles_figure(position: int, trained_len: int, factor: float, rope_type: str = "linear",
                       head_dim: int = 64, pair: int = 0, base: float = 10000.0):
    """Left: pair ``pair`` of a RoPE vector turned to ``position``, unscaled and scaled, on the unit
    circle. Right: for every pair i, the angle at ``position`` over the end of the trained range,
    m theta_i' / (L theta_i): at 1 or above the model never saw that angle (angles are capped at one
    full turn: pairs that turn all the way round within L have seen every angle)."""
    if not 0 <= pair < head_dim // 2:
        raise ValueError(f"pair must be in 0 .. {head_dim // 2 - 1}, got {pair}")
    if position < 0 or trained_len <= 1:
        raise ValueError(f"need position >= 0 and trained_len > 1, got {position}, {trained_len}")
    plain, _ = rope_inv_freq(head_dim, base)
    scaling = None if factor == 1.0 or rope_type == "none" else \
        {"rope_type": rope_type, "factor": factor, "original_max_position_embeddings": trained_len}
    # Dynamic NTK rescales for the length of the sequence at hand: one that reaches ``position``
    # (at least L long, below which it leaves RoPE unchanged). The other types ignore seq_len.
    scaled, _ = rope_inv_freq(head_dim, base, scaling, seq_len=max(position + 1, trained_len))
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    circle = torch.linspace(0, 2 * math.pi, 200)
    left.plot(circle.cos().numpy(), circle.sin().numpy(), color="lightgray")
    seen = torch.arange(trained_len) * plain[pair]
    left.scatter(seen.cos().numpy(), seen.sin().numpy(), s=6, color="tab:blue", alpha=0.4, label=f"positions 0..{trained_len - 1} (trained)")
    for theta, color, name in ((plain[pair], "tab:red", "unscaled"), (scaled[pair], "tab:green", rope_type)):
        angle = position * theta
        left.arrow(0, 0, 0.9 * angle.cos().item(), 0.9 * angle.sin().item(), color=color, width=0.02,
                   label=f"position {position}, {name}")
    left.set(aspect="equal", xlim=(-1.3, 1.3), ylim=(-1.3, 1.3), title=f"pair {pair}: θ = {plain[pair].item():.3g}")
    left.legend(fontsize=7, loc="lower left")
    trained_max = (trained_len * plain).clamp(max=2 * math.pi)      # the range [0, L) of training
    i = torch.arange(head_dim // 2)
    for inv, color, name in ((plain, "tab:red", "unscaled"), (scaled, "tab:green", rope_type)):
        ratio = (position * inv).clamp(max=2 * math.pi) / trained_max
        right.plot(i.numpy(), ratio.numpy(), marker=".", color=color, label=name)
    right.axhline(1.0, color="black", lw=0.8)
    right.set(xlabel="pair i (fast → slow)", ylabel="angle / largest trained angle", yscale="log",
              title=f"position {position}, trained on {trained_len}, factor {factor:g}")
    right.legend(fontsize=8)
    right.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def rope_explorer(trained_len: int = 64, head_dim: int = 32):
    """Sliders for the position, the pair, the factor and the scaling type: where RoPE's angles go
    beyond what training showed, and how interpolation, NTK and YaRN bring them back."""
    position = w.IntSlider(value=2 * trained_len, min=0, max=8 * trained_len, description="position", style=FIT_LABEL)
    pair = w.IntSlider(value=head_dim // 2 - 1, min=0, max=head_dim // 2 - 1, description="pair i", style=FIT_LABEL)
    factor = w.FloatSlider(value=4.0, min=1.0, max=8.0, step=0.5, description="factor s", style=FIT_LABEL)
    kind = w.Dropdown(options=["linear", "ntk", "yarn", "dynamic"], value="linear", description="scaling",
                      style=FIT_LABEL)

    def draw():
        rope_angles_figure(position.value, trained_len, factor.value, kind.value, head_dim, pair.value)
        plt.show()

    return live_view([[position, pair], [factor, kind]], draw)


# ----------------------------------------------------------------------------- chapter 05: instruction data
def rouge_threshold_explorer(candidates: list[str], pool: list[str], threshold: float = 0.7):
    """Move the ROUGE-L threshold: which candidate instructions the incremental filter keeps
    (``llmtap.rouge.rouge_filter``: against ``pool`` and the candidates kept before them), with a
    histogram of each candidate's highest similarity. The filter runs again at every move."""
    if not candidates:
        raise ValueError("give at least one candidate instruction")
    slider = w.FloatSlider(value=threshold, min=0.1, max=1.0, step=0.05, description="threshold", style=FIT_LABEL)

    def draw():
        best = rouge_filter_scores(candidates, pool, slider.value)
        kept = [b < slider.value for b in best]
        fig, ax = plt.subplots(figsize=(6, 2.6))
        ax.hist([b for b, k in zip(best, kept) if k], bins=20, range=(0, 1), color="tab:green", label="kept")
        ax.hist([b for b, k in zip(best, kept) if not k], bins=20, range=(0, 1), color="tab:red", label="rejected")
        ax.axvline(slider.value, color="black", ls="--")
        ax.set(xlabel="highest ROUGE-L with the pool so far", ylabel="instructions",
               title=f"kept {sum(kept)} of {len(kept)} at threshold {slider.value:.2f}")
        ax.legend()
        fig.tight_layout()
        plt.show()
        for text, k, b in list(zip(candidates, kept, best))[:12]:
            print(f"{'kept    ' if k else 'rejected'}  {b:.2f}  {text}")

    return live_view([slider], draw)


# ----------------------------------------------------------------------------- chapter 06: chat templates and loss masks
ROLE_COLOURS = {"system": "#d9d9d9", "user": "#cfe2f3", "assistant": "#d9ead3"}


def token_roles(messages, rendered) -> list[str]:
    """The role that wrote each character of ``rendered.text`` (the template's own text counts as
    the role of the message it wraps): each message's content is looked up in order."""
    roles, pos = ["template"] * len(rendered.text), 0
    for m in messages:
        start = rendered.text.find(m["content"], pos)
        if start < 0:
            continue
        roles[start:start + len(m["content"])] = [m["role"]] * len(m["content"])
        pos = start + len(m["content"])
    return roles


def loss_mask_figure(messages, template: str = "chatml", tokenizer=None, last_turn_only: bool = False,
                     bug: str | None = None, per_row: int = 32):
    """Every token of a rendered conversation as a box: filled by the role whose text it is (grey
    system, blue user, green assistant, white template text), framed in red when it is a target of
    the loss (``chat.chat_labels`` with ``last_turn_only`` and ``bug``). Returns the Figure."""
    from .chat import _course_tokens, _overlaps, chat_labels, render
    from .tokenizer import Tokenizer
    rendered = render(messages, template, bos_token="<bos>")
    tokenizer = tokenizer or Tokenizer.from_text(rendered.text)
    ids, offsets = _course_tokens(rendered.text, tokenizer)       # each token's (start, end) in the text
    mask = _overlaps(offsets, rendered.assistant_spans)
    _, y = chat_labels(ids, mask, last_turn_only=last_turn_only, bug=bug, pad_id=tokenizer.eos_id)
    trained = [False] + [bool(v != -100) for v in y.tolist()]            # token k is the target at k - 1
    char_roles = token_roles(messages, rendered)
    pieces = [tokenizer.id_to_piece(i) for i in ids]
    starts = [start for start, _ in offsets]
    rows = (len(ids) + per_row - 1) // per_row
    fig, ax = plt.subplots(figsize=(per_row * 0.32, rows * 0.42 + 0.5))
    for k, (piece, start) in enumerate(zip(pieces, starts)):
        r, c = divmod(k, per_row)
        role = char_roles[start] if start < len(char_roles) else "template"
        ax.add_patch(plt.Rectangle((c, -r), 0.92, 0.8, facecolor=ROLE_COLOURS.get(role, "white"),
                                   edgecolor="red" if trained[k] else "#999999", lw=2 if trained[k] else 0.5))
        label = {"\n": "⏎", " ": "·"}.get(piece, "b" if piece.startswith("<0x") else piece)    # b: a byte token
        ax.text(c + 0.46, -r + 0.4, label if len(label) == 1 else label.strip("<>")[:3], ha="center", va="center",
                fontsize=7 if len(label) == 1 else 5)
    ax.set(xlim=(-0.1, per_row), ylim=(-rows + 0.9, 0.9), xticks=[], yticks=[])
    for side in ax.spines.values():
        side.set_visible(False)
    n = sum(trained)
    ax.set_title(f"{template}: {len(ids)} tokens, {n} trained (red frame)" + (f", bug: {bug}" if bug else "")
                 + ("; last turn only" if last_turn_only else ""), fontsize=9)
    fig.tight_layout()
    return fig


def loss_mask_explorer(messages, tokenizer=None):
    """Pick a chat template, a labelling mistake and whether every assistant turn is trained: the
    conversation's tokens, coloured by role, with the trained ones framed."""
    from .chat import BUGS, TEMPLATES
    templates = [t for t in TEMPLATES if t != "alpaca" or len(messages) == 2]
    template = w.Dropdown(options=templates, value=templates[0], description="template", style=FIT_LABEL)
    bug = w.Dropdown(options=[("none", None)] + [(b, b) for b in BUGS], value=None, description="mistake",
                     style=FIT_LABEL)
    last = w.Checkbox(value=False, description="last turn only")

    def draw():
        loss_mask_figure(messages, template.value, tokenizer, last.value, bug.value)
        plt.show()
        print(BUGS[bug.value].effect if bug.value else "labels right: every assistant token, its end mark included, "
              "is a target, and nothing else is")

    return live_view([[template, bug], last], draw)

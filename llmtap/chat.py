"""From instruction records to a chat model: chat templates, the assistant-token mask, and
labels that train on the answers only.

A conversation (``messages``, as in ``llmtap.conversations``) becomes one text through a chat
template, a small Jinja program in the convention of Hugging Face's ``chat_template``: it reads
``messages``, ``add_generation_prompt``, ``bos_token`` and ``eos_token``, and wraps what the
assistant says in ``{% generation %} ... {% endgeneration %}``. The steps, each a function here:

    messages --render--> Rendered(text, assistant_spans)        character spans of the answers
             --token_mask--> (ids, mask)                          mask[i]: token i is the assistant's
             --chat_labels / collate_chat--> (x, y)               y = -100 where nothing is learned
             --check_labels--> the invariants every batch builder must keep

The labels follow the course convention of ``llmtap.train.collate_completions``: x is the row
without its last token, y[t] is the token that should follow x[t], and -100 (ignored by the
cross-entropy) wherever the next token is not the assistant's. Four classic mistakes can be
switched on (``bug=``) to see what each does to the labels, and ``check_labels`` names the
invariant each one breaks.
"""
from __future__ import annotations

import json
import re
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import lru_cache

import jinja2
import torch
from jinja2 import nodes
from jinja2.ext import Extension, loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

from .conversations import ROLES, Conversation
from .tokenizer import SPECIAL_TOKENS, Tokenizer

CHAT_ROLES = ROLES[:3]          # system, user, assistant: the roles the templates here render
IGNORE = -100                   # the label cross-entropy skips (ignore_index)

# ----------------------------------------------------------------------------- the templates
# Each template is a Jinja string, readable on its own. ``{%- ... -%}`` and ``{{- ... -}}`` strip
# the whitespace around a tag, so the indentation below is for the reader and never reaches the text.

CHATML = r"""
{%- for message in messages -%}
    {{- '<|im_start|>' + message['role'] + '\n' -}}
    {%- if message['role'] == 'assistant' -%}
        {#- the answer and its end mark are learned: the model must learn to stop -#}
        {%- generation -%}
            {{- message['content'] + '<|im_end|>' -}}
        {%- endgeneration -%}
        {{- '\n' -}}
    {%- else -%}
        {{- message['content'] + '<|im_end|>' + '\n' -}}
    {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- '<|im_start|>assistant\n' -}}
{%- endif -%}
"""

HUMAN_ASSISTANT = r"""
{{- bos_token -}}
{%- for message in messages -%}
    {%- if message['role'] == 'system' -%}
        {{- message['content'] + '\n' -}}
    {%- elif message['role'] == 'user' -%}
        {{- 'Human: ' + message['content'] + '\n' -}}
    {%- else -%}
        {{- 'Assistant: ' -}}
        {%- generation -%}
            {{- message['content'] + eos_token -}}
        {%- endgeneration -%}
        {{- '\n' -}}
    {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- 'Assistant: ' -}}
{%- endif -%}
"""

ALPACA = r"""
{%- if messages | length > 2
      or messages[0]['role'] != 'user'
      or (messages | length == 2 and messages[1]['role'] != 'assistant') -%}
    {{- raise_exception('the alpaca template takes one user message, optionally followed by one '
                        + 'assistant message; got the roles ' + (messages | map(attribute='role') | join(', '))) -}}
{%- endif -%}
{%- if add_generation_prompt and messages | length == 2 -%}
    {{- raise_exception('add_generation_prompt asks for a new answer, but the alpaca template holds '
                        + 'a single answer and it is there already') -}}
{%- endif -%}
{{- bos_token -}}
{{- 'Below is an instruction that describes a task. '
    + 'Write a response that appropriately completes the request.\n\n' -}}
{{- '### Instruction:\n' + messages[0]['content'] + '\n\n' -}}
{%- if messages | length == 2 -%}
    {{- '### Response:\n' -}}
    {%- generation -%}
        {{- messages[1]['content'] + eos_token -}}
    {%- endgeneration -%}
{%- elif add_generation_prompt -%}
    {{- '### Response:\n' -}}
{%- endif -%}
"""

TEMPLATES = {
    "chatml": CHATML,                       # <|im_start|>role\n...<|im_end|>\n (OpenAI's ChatML, Qwen, ...)
    "human-assistant": HUMAN_ASSISTANT,     # Human: ... / Assistant: ...<eos>: the textbook companion's layout
    "alpaca": ALPACA,                       # Stanford Alpaca's single-turn instruction prompt
}


# ----------------------------------------------------------------------------- rendering
@dataclass(frozen=True)
class Rendered:
    """A rendered conversation: ``text``, and the (start, end) character spans the template wrote
    inside ``{% generation %}`` blocks (``text[start:end]`` is what the assistant says)."""
    text: str
    assistant_spans: list = field(default_factory=list)

    def assistant_texts(self) -> list[str]:
        return [self.text[start:end] for start, end in self.assistant_spans]

    def marked(self, open_mark: str = "【", close_mark: str = "】") -> str:
        """The text with each assistant span between two marks, to see at a glance what is learned."""
        out, pos = [], 0
        for start, end in self.assistant_spans:
            out += [self.text[pos:start], open_mark, self.text[start:end], close_mark]
            pos = end
        return "".join(out + [self.text[pos:]])


class _Written:
    """What render() has taken from the template so far: a character count, and the
    (start, end, text) of every generation block met."""

    def __init__(self):
        self.length = 0
        self.blocks = []


_WRITTEN: ContextVar = ContextVar("llmtap_chat_written", default=None)


class GenerationBlock(Extension):
    """The ``{% generation %} ... {% endgeneration %}`` tag of Hugging Face chat templates.

    Jinja writes a template's output piece by piece (``Template.generate``), and render() counts
    the characters it has taken so far. When Jinja reaches a generation block, everything before
    the block has been written, so the block's text starts at that count: the block notes where
    it starts and ends and passes its text on unchanged. The rendered text is thus exactly what
    the template writes without the tag."""
    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return nodes.CallBlock(self.call_method("_note"), [], [], body).set_lineno(lineno)

    def _note(self, caller) -> str:
        text = caller()
        written = _WRITTEN.get()
        if written is not None:
            written.blocks.append((written.length, written.length + len(text), text))
        return text


class _Refusal(Exception):
    """Raised by ``raise_exception(message)`` inside a template."""


def _raise_exception(message):
    raise _Refusal(str(message))


@lru_cache(maxsize=64)
def _compile(source: str) -> jinja2.Template:
    """A chat template compiled as Hugging Face compiles one: in Jinja's sandbox (templates are
    code from strangers), with trim_blocks and lstrip_blocks, ``break`` / ``continue``,
    ``raise_exception`` and a ``tojson`` that leaves non-ASCII text as it is."""
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[GenerationBlock, loopcontrols])
    env.globals["raise_exception"] = _raise_exception
    env.filters["tojson"] = _tojson
    try:
        return env.from_string(source)
    except jinja2.TemplateSyntaxError as e:
        raise ValueError(f"the chat template does not parse, line {e.lineno}: {e.message}") from None


def _tojson(value, ensure_ascii=False, indent=None, separators=None, sort_keys=False) -> str:
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _template_source(template) -> tuple[str, str]:
    """(Jinja source, how to name it in an error) of a template name or a template string."""
    if not isinstance(template, str):
        raise TypeError(f"template must be a name from TEMPLATES or a Jinja string, got {type(template).__name__}")
    if template in TEMPLATES:
        return TEMPLATES[template], f"the {template!r} template"
    if "{{" in template or "{%" in template:
        return template, "the chat template"
    raise ValueError(f"unknown template {template!r}: give one of {tuple(TEMPLATES)} or a Jinja chat template "
                     f"string (one with {{{{ ... }}}} or {{% ... %}} in it)")


def check_messages(messages) -> list[dict]:
    """``messages`` as a list, if it is a conversation a template can render: a non-empty list of
    dicts, each with a role in ``CHAT_ROLES`` and a str content, a system message only first.
    A ``Conversation`` gives its messages."""
    if isinstance(messages, Conversation):
        messages = messages.messages
    if not isinstance(messages, (list, tuple)) or not messages:
        raise ValueError(f"messages must be a non-empty list of {{'role', 'content'}} dicts, got {messages!r:.80}")
    for k, m in enumerate(messages):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise ValueError(f"message {k} must be a dict with 'role' and 'content', got {m!r:.80}")
        if m["role"] not in CHAT_ROLES:
            hint = (" (tool turns are not rendered by these templates; keep such a conversation out or write "
                    "a template of your own)" if m["role"] in ROLES else "")
            raise ValueError(f"message {k} has role {m['role']!r}; roles are {CHAT_ROLES}{hint}")
        if not isinstance(m["content"], str):
            raise ValueError(f"message {k} ({m['role']}) has content of type {type(m['content']).__name__}; "
                             f"content must be a str")
        if m["role"] == "system" and k > 0:
            raise ValueError(f"message {k} is a system message; only the first message may be one")
    return list(messages)


def render(messages, template, add_generation_prompt: bool = False, bos_token: str = "",
           eos_token: str = "<eos>") -> Rendered:
    """The conversation as one text through a chat template, with the character spans of what
    the assistant says.

    ``template``: a name from ``TEMPLATES`` or a Jinja string in Hugging Face's chat-template
    convention. ``add_generation_prompt=True`` ends the text with the header of a new assistant
    turn (``<|im_start|>assistant\\n``, ``Assistant: ``), for the model to answer from.
    ``bos_token`` / ``eos_token`` are the texts the template writes for them: the course tokenizer
    reads ``"<bos>"`` and ``"<eos>"`` as its special tokens (``token_mask``); for a Hugging Face
    tokenizer give its ``tokenizer.bos_token`` and ``tokenizer.eos_token``.

    A template may refuse a conversation with ``raise_exception(message)``: that is a
    ValueError with the template's message."""
    messages = check_messages(messages)
    source, name = _template_source(template)
    if not isinstance(add_generation_prompt, bool):
        raise TypeError(f"add_generation_prompt must be True or False, got {add_generation_prompt!r}")
    for arg, value in (("bos_token", bos_token), ("eos_token", eos_token)):
        if not isinstance(value, str):
            raise TypeError(f"{arg} must be the token's text (a str), got {type(value).__name__}")
    compiled = _compile(source)
    written, pieces = _Written(), []
    reset = _WRITTEN.set(written)
    try:
        for piece in compiled.generate(messages=messages, add_generation_prompt=add_generation_prompt,
                                       bos_token=bos_token, eos_token=eos_token):
            pieces.append(piece)
            written.length += len(piece)
    except _Refusal as e:
        raise ValueError(f"{name} refuses these messages: {e}") from None
    except jinja2.TemplateError as e:
        raise ValueError(f"{name} failed on these messages: {type(e).__name__}: {e}") from None
    finally:
        _WRITTEN.reset(reset)
    text = "".join(pieces)
    blocks = sorted(written.blocks)
    for start, end, piece in blocks:
        if text[start:end] != piece:
            raise ValueError(f"{name} writes a {{% generation %}} block whose text cannot be located in the "
                             f"output: keep generation blocks at the top level of the template, outside "
                             f"{{% set %}}, {{% filter %}}, macros and other generation blocks")
    return Rendered(text, [(start, end) for start, end, _ in blocks])


# ----------------------------------------------------------------------------- tokens and their mask
def token_mask(rendered: Rendered, tokenizer) -> tuple[list[int], list[bool]]:
    """(ids, mask) of a rendered conversation: mask[i] is True when token i comes from a
    character inside an assistant span (a token that overlaps a span counts, as in
    transformers' ``return_assistant_tokens_mask``).

    ``tokenizer``: the course ``Tokenizer`` or a Hugging Face *fast* tokenizer. The course
    tokenizer spells a character outside its vocabulary as several byte tokens; each of them
    takes the character's place in the mask. Like a Hugging Face tokenizer with its special
    tokens, it reads the texts ``<pad>``, ``<bos>``, ``<eos>`` as one special token each, so the
    ``eos_token="<eos>"`` a template writes becomes the <eos> id. No <bos> is added: the template
    writes the ``bos_token`` it is given."""
    if not isinstance(rendered, Rendered):
        raise TypeError(f"token_mask takes the Rendered that render() returns, got {type(rendered).__name__}")
    if isinstance(tokenizer, Tokenizer):
        ids, offsets = _course_tokens(rendered.text, tokenizer)
    elif getattr(tokenizer, "is_fast", False):
        encoded = tokenizer(rendered.text, add_special_tokens=False, return_offsets_mapping=True)
        ids, offsets = list(encoded["input_ids"]), [tuple(o) for o in encoded["offset_mapping"]]
    else:
        raise TypeError(f"token_mask needs the course Tokenizer or a Hugging Face fast tokenizer (one with "
                        f"is_fast True: the character offsets come from the tokenizers library), got "
                        f"{type(tokenizer).__name__}")
    return ids, _overlaps(offsets, rendered.assistant_spans)


_SPECIAL_TEXT = re.compile("|".join(re.escape(s) for s in SPECIAL_TOKENS))


def _course_tokens(text: str, tokenizer: Tokenizer) -> tuple[list[int], list[tuple[int, int]]]:
    """Token ids and each token's (start, end) in ``text``: one character per token, or several
    byte tokens sharing the character's offsets; a special token's text is one token."""
    special = {"<pad>": tokenizer.pad_id, "<bos>": tokenizer.bos_id, "<eos>": tokenizer.eos_id}
    ids, offsets, pos = [], [], 0
    for match in [*_SPECIAL_TEXT.finditer(text), None]:
        stop = match.start() if match else len(text)
        for k in range(pos, stop):
            for i in tokenizer.encode(text[k]):
                ids.append(i)
                offsets.append((k, k + 1))
        if match:
            ids.append(special[match.group()])
            offsets.append(match.span())
            pos = match.end()
    return ids, offsets


def _overlaps(offsets, spans) -> list[bool]:
    """For each token (start, end), whether it overlaps a span; tokens and spans are in order,
    so one pass over both is enough."""
    mask, k = [], 0
    for start, end in offsets:
        while k < len(spans) and start >= spans[k][1]:
            k += 1
        mask.append(k < len(spans) and end > spans[k][0])
    return mask


def assistant_turns(mask) -> list[tuple[int, int]]:
    """(start, end) token ranges of the assistant turns: the runs of True in ``mask``."""
    turns, start = [], None
    for k, m in enumerate(list(mask) + [False]):
        if m and start is None:
            start = k
        elif not m and start is not None:
            turns.append((start, k))
            start = None
    return turns


# ----------------------------------------------------------------------------- labels
@dataclass(frozen=True)
class Bug:
    """A classic labelling mistake, the invariant of ``check_labels`` it breaks, and what it does."""
    breaks: str
    effect: str


BUGS = {
    "off-by-one": Bug("shift", "the labels are not shifted: y[t] is the token x[t] itself, not the next one (as "
                               "when labels = input_ids reach a model that does not shift them, like the course "
                               "GPT). At the first answer position the target is the prompt's last token, and "
                               "the answer's first token is never a target: the model learns to copy its input"),
    "late-start": Bug("first-token", "the answer's mask starts one token late (a prompt length counted one token "
                                     "too long, say with its <bos> counted twice): the first token of every "
                                     "answer is never a target, so the model never learns how to begin"),
    "pad-is-eos": Bug("eos", "the labels are set to -100 wherever the token equals pad_id (a common collator "
                             "shortcut to hide the padding); when pad_id == eos_id this hides every <eos> too, "
                             "and the model never learns to stop"),
    "train-on-prompt": Bug("no-prompt", "labels = input_ids: the loss is on every token, prompt and template "
                                        "text included, so the model also learns to write the user's turns"),
}

INVARIANTS = {
    "shift": "x is the row without its last token, then padding, and every trained y[t] is the row's next "
             "token ids[t + 1]",
    "first-token": "the first token of every trained assistant turn is a target",
    "eos": "every eos token in a trained assistant turn is a target, also when pad_id == eos_id",
    "no-prompt": "no prompt, template or padding position is trained",
    "turns": "every assistant turn is trained (only the last one when last_turn_only=True)",
}


def _row(ids, mask, where: str) -> tuple[list[int], list[bool]]:
    """(ids, mask) as plain lists, checked: ints and bools of one length, at least two tokens,
    an assistant token to learn, and none at position 0 (no token comes before it)."""
    ids = ids.tolist() if torch.is_tensor(ids) else ids
    mask = mask.tolist() if torch.is_tensor(mask) else mask
    if not isinstance(ids, (list, tuple)) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise ValueError(f"{where}: ids must be a list of token ids (ints), got {ids!r:.80}")
    if not isinstance(mask, (list, tuple)) or not all(m in (0, 1) for m in mask):
        raise ValueError(f"{where}: mask must be a list of True/False (or 1/0), got {mask!r:.80}")
    if len(ids) != len(mask):
        raise ValueError(f"{where}: ids has {len(ids)} tokens but mask has {len(mask)} entries; give the pair "
                         f"token_mask() returns")
    if len(ids) < 2:
        raise ValueError(f"{where}: a row needs at least two tokens (one to read, one to predict), got {len(ids)}")
    mask = [bool(m) for m in mask]
    if not any(mask):
        raise ValueError(f"{where}: no token is the assistant's, so there is nothing to learn; was it rendered with "
                         f"add_generation_prompt=True, or does the template lack a {{% generation %}} block?")
    if mask[0]:
        raise ValueError(f"{where}: token 0 is the assistant's, but the first token is never a target (nothing "
                         f"comes before it); render with a bos_token or a template that starts with a header")
    return list(ids), mask


def _label_switches(last_turn_only, bug, pad_id) -> None:
    if not isinstance(last_turn_only, bool):
        raise TypeError(f"last_turn_only must be True or False, got {last_turn_only!r}")
    if bug is not None and bug not in BUGS:
        raise ValueError(f"bug must be None or one of {tuple(BUGS)}, got {bug!r}")
    if pad_id is not None and (isinstance(pad_id, bool) or not isinstance(pad_id, int)):
        raise ValueError(f"pad_id must be a token id (an int), got {pad_id!r}")
    if bug == "pad-is-eos" and pad_id is None:
        raise ValueError("bug='pad-is-eos' masks the tokens equal to pad_id: give pad_id (the eos id shows the bug)")


def chat_labels(ids, mask, *, last_turn_only: bool = False, bug: str | None = None,
                pad_id: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) of one row for a next-token loss: x = ids[:-1]; y[t] = ids[t + 1] where that token
    is the assistant's, else -100 (ignored by the cross-entropy).

    Every assistant turn of a multi-turn conversation is trained; ``last_turn_only=True`` trains
    the last one only (a legitimate choice: earlier answers are then context, as when a
    conversation is cut into one example per answer). ``bug``: one of ``BUGS``, to see its effect
    (``pad-is-eos`` needs ``pad_id``). A Hugging Face model shifts the labels itself: give it
    ``input_ids = ids`` and ``labels = [-100] + y``."""
    _label_switches(last_turn_only, bug, pad_id)
    ids, mask = _row(ids, mask, "the row")
    turns = assistant_turns(mask)
    trained = [False] * len(ids)                  # trained[k]: token k is a target
    for start, end in (turns[-1:] if last_turn_only else turns):
        for k in range(start + (bug == "late-start"), end):
            trained[k] = True
    if bug == "train-on-prompt":
        trained = [True] * len(ids)
    ids_t = torch.tensor(ids, dtype=torch.long)
    targets = ids_t[:-1] if bug == "off-by-one" else ids_t[1:]   # position t should predict token t + 1
    y = torch.where(torch.tensor(trained[1:]), targets, torch.full_like(targets, IGNORE))
    if bug == "pad-is-eos":
        y[y == pad_id] = IGNORE
    return ids_t[:-1].clone(), y


def collate_chat(rows, pad_id: int, *, last_turn_only: bool = False,
                 bug: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One right-padded batch (x, y) from (ids, mask) rows (``token_mask``'s output): each row's
    x and y from ``chat_labels``, x padded with ``pad_id``, y with -100."""
    rows = list(rows)
    if not rows:
        raise ValueError("rows is empty; give (ids, mask) pairs as token_mask() returns them")
    if isinstance(pad_id, bool) or not isinstance(pad_id, int):
        raise ValueError(f"pad_id must be a token id (an int), got {pad_id!r}")
    _label_switches(last_turn_only, bug, pad_id)
    pairs = []
    for i, row in enumerate(rows):
        if not isinstance(row, (tuple, list)) or len(row) != 2:
            raise ValueError(f"row {i} must be an (ids, mask) pair, got {row!r:.80}")
        ids, mask = _row(*row, f"row {i}")
        pairs.append(chat_labels(ids, mask, last_turn_only=last_turn_only, bug=bug, pad_id=pad_id))
    return pad_pairs(pairs, pad_id)


def pad_pairs(pairs, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad the rows' (x, y) pairs (tensors or lists of ints) into a (B, T) batch: x with
    ``pad_id``, y with -100, so that padding is never a target."""
    pairs = [(torch.as_tensor(x, dtype=torch.long), torch.as_tensor(y, dtype=torch.long)) for x, y in pairs]
    if not pairs:
        raise ValueError("pairs is empty; give (x, y) pairs as chat_labels() returns them")
    T = max(len(x) for x, _ in pairs)
    x = torch.full((len(pairs), T), pad_id, dtype=torch.long)
    y = torch.full((len(pairs), T), IGNORE, dtype=torch.long)
    for i, (xi, yi) in enumerate(pairs):
        x[i, :len(xi)], y[i, :len(yi)] = xi, yi
    return x, y


# ----------------------------------------------------------------------------- invariants
def check_labels(x, y, rows, *, eos_id: int, pad_id: int | None = None, last_turn_only: bool = False,
                 raise_error: bool = True) -> dict[str, str]:
    """Check a batch (x, y) against the (ids, mask) rows it was built from, invariant by
    invariant (``INVARIANTS``):

    * shift: x holds each row without its last token, then ``pad_id``; every trained y[t] is ids[t + 1];
    * first-token: each trained assistant turn's first token is a target;
    * eos: each ``eos_id`` inside a trained assistant turn is a target;
    * no-prompt: no position whose next token is prompt, template or padding is trained;
    * turns: every assistant turn is trained, or only the last with ``last_turn_only=True``.

    Each invariant looks at something the others do not (the values, or which positions), so a
    mistake breaks exactly the invariant it is about. Returns {invariant: message naming the
    first offending row and position}, empty when all hold; with ``raise_error`` (the default)
    a broken invariant raises ValueError with those messages instead. One row from
    ``chat_labels``: 1-d x and y, and ``rows`` the one (ids, mask) pair."""
    if not (torch.is_tensor(x) and torch.is_tensor(y)) or x.shape != y.shape or x.dim() not in (1, 2):
        raise ValueError(f"x and y must be tensors of one shape, (T,) or (batch, T); got "
                         f"{getattr(x, 'shape', type(x).__name__)} and {getattr(y, 'shape', type(y).__name__)}")
    if x.dim() == 1:
        x, y, rows = x[None], y[None], [rows]
    rows = list(rows)
    if len(rows) != len(x):
        raise ValueError(f"the batch has {len(x)} rows but {len(rows)} (ids, mask) rows were given; give the rows "
                         f"the batch was built from, in order")
    if isinstance(eos_id, bool) or not isinstance(eos_id, int):
        raise ValueError(f"eos_id must be a token id (an int), got {eos_id!r}")
    _label_switches(last_turn_only, None, pad_id)
    problems = {}
    for i, row in enumerate(rows):
        if not isinstance(row, (tuple, list)) or len(row) != 2:
            raise ValueError(f"row {i} must be an (ids, mask) pair, got {row!r:.80}")
        ids, mask = _row(*row, f"row {i}")
        if len(ids) - 1 > x.shape[1]:
            raise ValueError(f"row {i} has {len(ids)} tokens, too many for a batch of {x.shape[1]} positions: "
                             f"the batch was not built from these rows")
        found = _row_problems(ids, mask, x[i].tolist(), y[i].tolist(), eos_id, pad_id, last_turn_only)
        for name, message in found.items():
            problems.setdefault(name, f"row {i}, {message}")
    problems = {name: problems[name] for name in INVARIANTS if name in problems}
    if problems and raise_error:
        lines = [f"{name} ({INVARIANTS[name]}): {message}" for name, message in problems.items()]
        raise ValueError(f"the labels break {len(lines)} invariant(s):\n" + "\n".join(lines))
    return problems


def _row_problems(ids, mask, x, y, eos_id, pad_id, last_turn_only) -> dict[str, str]:
    """The first failure of each invariant in one row; position t reads x[t] and predicts ids[t + 1]."""
    n, T = len(ids), len(x)
    found = {}

    def fail(name, message):
        found.setdefault(name, message)

    for t in range(T):
        if t < n - 1 and x[t] != ids[t]:
            fail("shift", f"position {t}: x = {x[t]} but the row's token {t} is {ids[t]}")
        elif t >= n - 1 and pad_id is not None and x[t] != pad_id:
            fail("shift", f"position {t}: x = {x[t]} is past the row's end but not pad_id {pad_id}")
        if y[t] == IGNORE:
            continue
        if t >= n - 1:
            fail("no-prompt", f"position {t}: y = {y[t]} trains a padding position (the row has {n} tokens)")
        elif not mask[t + 1]:
            fail("no-prompt", f"position {t}: y = {y[t]} trains token {t + 1}, which is prompt or template "
                              f"text, not the assistant's")
        if t < n - 1 and y[t] != ids[t + 1]:
            fail("shift", f"position {t}: y = {y[t]} but the next token is {ids[t + 1]} (y[t] is x[t] "
                          f"itself: the labels were not shifted)" if y[t] == ids[t] else
                          f"position {t}: y = {y[t]} but the next token is {ids[t + 1]}")
    turns = assistant_turns(mask)
    expected = set(range(len(turns)))
    if last_turn_only:
        expected = {len(turns) - 1}
    for r, (start, end) in enumerate(turns):
        trained = [k for k in range(start, end) if y[k - 1] != IGNORE]   # token k is the target at k - 1
        if r in expected and not trained:
            fail("turns", f"position {start - 1}: assistant turn {r} (tokens {start}..{end - 1}) is not trained at "
                          f"all" + ("" if last_turn_only else " (last_turn_only=False: every turn should be)"))
        elif r not in expected and trained:
            fail("turns", f"position {trained[0] - 1}: assistant turn {r} (tokens {start}..{end - 1}) is trained, "
                          f"but last_turn_only=True trains the last turn only")
        if r not in expected or not trained:
            continue
        if y[start - 1] == IGNORE:
            fail("first-token", f"position {start - 1}: the first token of assistant turn {r} (token {start}) is "
                                f"not a target, so the model never learns how an answer begins")
        for k in range(start, end):
            if ids[k] == eos_id and y[k - 1] == IGNORE:
                hint = ("; pad_id == eos_id here, so masking the pad tokens masks the eos too" if pad_id == eos_id
                        else "")
                fail("eos", f"position {k - 1}: the eos (id {eos_id}) at token {k} of assistant turn {r} is not "
                            f"a target, so the model never learns to stop{hint}")
    return found


__all__ = ["TEMPLATES", "CHAT_ROLES", "IGNORE", "Rendered", "GenerationBlock", "check_messages", "render",
           "token_mask", "assistant_turns", "Bug", "BUGS", "INVARIANTS", "chat_labels", "collate_chat", "pad_pairs",
           "check_labels"]

"""Checker cells for the graded exercises.

Each ``check_*`` function tests a student's answer against the library and prints one line:
correct, not solved yet (the stub still raises NotImplementedError), or what is wrong.
It returns True only for a correct answer. A notebook imports them from here
(``from llmtap.checks import check_lcs``); each chapter's checkers live in their own module:

- ``common``: ``run_check``, which runs a checker's test and prints the verdict
- ``ch00``: the course model - causal mask, sampling, next-token loss
- ``ch01``: prompting - answer scorer, verbalizer, k-shot prompt
- ``ch02``: LoRA - forward pass, the LoRA layer, merging, parameter count
- ``ch02b``: the LoRA family - one NF4 block, DoRA's weight, PiSSA's start
- ``ch03``: adapters and prefixes - adapter forward pass, the adapter block, attention with a prefix, soft prompt from text
- ``ch04``: ALiBi and context extension - ALiBi slopes and bias, interpolated positions, YaRN's frequencies
- ``ch05``: instruction data - longest common subsequence, instruction filter, one Self-Instruct round, the SFT batch
- ``ch06``: chat models - the assistant mask, the block-diagonal causal mask of a packed batch, chat labels
"""
from .ch00 import check_causal_mask, check_next_token_loss, check_sample_next
from .ch01 import check_answer_logprob, check_kshot_prompt, check_label_probs
from .ch02 import check_lora_forward, check_lora_layer, check_lora_param_count, check_merge_weight
from .ch02b import check_dora_weight, check_nf4_block, check_pissa_init
from .ch03 import check_adapter_block, check_adapter_forward, check_prefix_attention, check_soft_prompt_from_text
from .ch04 import check_alibi_bias, check_alibi_slopes, check_interpolated_positions, check_yarn_inv_freq
from .ch05 import check_instruction_round, check_keep_instruction, check_lcs, check_sft_batch
from .ch06 import check_assistant_mask, check_block_mask, check_chat_labels
from .common import run_check

__all__ = [
    "run_check",
    "check_causal_mask", "check_sample_next", "check_next_token_loss",
    "check_answer_logprob", "check_label_probs", "check_kshot_prompt",
    "check_lora_forward", "check_lora_layer", "check_merge_weight", "check_lora_param_count",
    "check_nf4_block", "check_dora_weight", "check_pissa_init",
    "check_adapter_forward", "check_adapter_block", "check_prefix_attention", "check_soft_prompt_from_text",
    "check_alibi_slopes", "check_alibi_bias", "check_interpolated_positions", "check_yarn_inv_freq",
    "check_lcs", "check_keep_instruction", "check_instruction_round", "check_sft_batch",
    "check_assistant_mask", "check_block_mask", "check_chat_labels",
]

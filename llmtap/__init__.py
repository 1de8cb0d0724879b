"""llmtap: the hands-on library of the LLM-TAP chapter 5 course (supervised fine-tuning)."""
from .checkpoints import load_checkpoint, load_course_model, save_checkpoint
from .model import GPT, GPTConfig, KVCache
from .tokenizer import Tokenizer
from .train import TrainConfig, pick_device, train

__version__ = "0.1.0"

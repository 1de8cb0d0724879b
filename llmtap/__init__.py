"""llmtap: the hands-on library of the LLM-TAP chapter 5 course (supervised fine-tuning)."""
from .model import GPT, GPTConfig, KVCache
from .tokenizer import Tokenizer
from .train import TrainConfig, load_checkpoint, pick_device, save_checkpoint, train

__version__ = "0.1.0"


def load_course_model(device=None):
    """The shipped course model and its tokenizer, loaded offline from the package: (model, tokenizer)."""
    from .pretrain import COURSE_MODEL_PATH
    if not COURSE_MODEL_PATH.is_file():
        raise FileNotFoundError(f"the course model checkpoint is missing at {COURSE_MODEL_PATH}; "
                                f"rebuild it with `python -m llmtap.pretrain`")
    return load_checkpoint(COURSE_MODEL_PATH, device=device)

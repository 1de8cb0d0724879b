"""llmtap: the hands-on library of the LLM-TAP chapter 5 course (supervised fine-tuning)."""
import sys

from .checkpoints import load_checkpoint, load_course_model, save_checkpoint
from .device import pick_device
from .model import GPT, GPTConfig, KVCache
from .tokenizer import Tokenizer
from .train import TrainConfig, train
from . import plots  # noqa: F401  (importing it registers the course's Chinese font: every plot shows Chinese)

if "google.colab" in sys.modules:     # Colab with ipywidgets 8 renders widgets (and tqdm's bars) only
    from .widgets import enable_colab_widget_manager    # with its custom widget manager: switch it on
    enable_colab_widget_manager()

__version__ = "0.1.0"

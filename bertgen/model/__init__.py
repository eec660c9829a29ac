"""bertgen's own PyTorch models: plain torch, no Lightning/Hydra/data imports."""

from .config import EncoderDecoderConfig, ModelConfig
from .encoder_decoder import DecoderOnlyLM, EncoderDecoder, ModelOutput, load_model, shift_tokens_right
from .mlm import BertMLM
from .transformer import KVCache, TransformerStack

__all__ = [
    "BertMLM",
    "DecoderOnlyLM",
    "EncoderDecoder",
    "EncoderDecoderConfig",
    "KVCache",
    "ModelConfig",
    "ModelOutput",
    "TransformerStack",
    "load_model",
    "shift_tokens_right",
]

"""One tokenizer interface over SentencePiece, WordPiece and byte-level BPE vocabularies.

Rothe et al. (TACL 2020) warm-start encoders and decoders from BERT (WordPiece), RoBERTa/GPT-2 (byte-level BPE)
and their own BERT-compatible SentencePiece checkpoints (HF ``BertGenerationTokenizer``); source and target may use
different tokenizers (bert2gpt). Every tokenizer here reproduces the ids and decoded text of the corresponding
Hugging Face tokenizer (transformers 4.57 is the test oracle, see ``tests/test_tokenization.py``), so checkpoints
trained with either stack are interchangeable. ``Tokenizer.for_text`` makes the variant a task's text needs
(``bertgen.text.TextConvention.prepare``; docs/text_fidelity.md).

Submodules:
- ``base``: the `Tokenizer` interface, special-token defaults per family, file names, shared helpers;
- ``sentencepiece``: `SentencePieceTokenizer` (``spiece.model``, BertGeneration convention);
- ``fast``: `FastTokenizer` over the ``tokenizers`` library (``tokenizer.json``, ``vocab.txt``,
  ``vocab.json`` + ``merges.txt``);
- ``loading``: `load_tokenizer` from a folder, a hub id or a single vocabulary file
  (``tokenizer_config.json`` / ``special_tokens_map.json`` override the special tokens);
- ``trainers``: `train_sentencepiece` and `train_wordpiece`, task-specific SentencePiece and BERT-style WordPiece
  vocabularies (``bertgen-data vocab``).
"""

from bertgen.tokenization.base import Tokenizer, TokenizerFileError, TokenizerNotFoundError
from bertgen.tokenization.fast import FastTokenizer
from bertgen.tokenization.loading import load_tokenizer
from bertgen.tokenization.sentencepiece import SentencePieceTokenizer
from bertgen.tokenization.trainers import train_sentencepiece, train_wordpiece, wordpiece_reserved

__all__ = [
    "Tokenizer",
    "SentencePieceTokenizer",
    "FastTokenizer",
    "TokenizerFileError",
    "TokenizerNotFoundError",
    "load_tokenizer",
    "train_sentencepiece",
    "train_wordpiece",
    "wordpiece_reserved",
]

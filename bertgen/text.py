"""Token ids <-> a task's text: the one ids-to-text path (validation, test, evaluation, every predictions file and
the reference ceiling) and the text conventions that tasks declare (``bertgen.data.tasks``: ``Task.text_convention``).

A perfect prediction must score 100, whatever the tokenizer. Two things stand in the way, and a convention fixes both:

* How the task's text is written. Fusion and splitting releases are whitespace-tokenised (``Bob 's house , he said .``):
  their metrics split on whitespace, so a decode path that glues punctuation (HF's ``clean_up_tokenization_spaces``)
  or a WordPiece tokenizer that forgets which pieces were glued (``mid-tempo`` -> ``mid - tempo``) changes the
  tokens the metric sees. News summaries are natural text scored by ROUGE, which ignores punctuation and spacing;
  WMT is scored by mteval-v14 BLEU, which splits punctuation itself except where it touches a digit.
* Separators that must stay one token: ``<::::>`` (five WordPiece pieces, ``< : : : : >``, otherwise).

Styles (``STYLES``):

=============  ===========================================  ==========  ==========================================
style          tasks                                        WordPiece   decoding
=============  ===========================================  ==========  ==========================================
``tokenized``  fusion, splitting, Gigaword (lowercased)     ``exact``   never cleaned up; whitespace collapsed
``natural``    CNN/DailyMail, XSum, user files              standard    the tokenizer's own (HF) clean-up
``bleu``       WMT14 (what its v14 BLEU tokenisation sees)  ``digits``  never cleaned up; whitespace collapsed
=============  ===========================================  ==========  ==========================================

``TextConvention.prepare`` turns any bertgen tokenizer into the task's (``Tokenizer.for_text``: atomic tokens,
WordPiece pre-tokenisation, clean-up); the DataModule encodes with it and `decode_generated` decodes with it, so
encoding, the ``gpt`` prompt, both sides of bert2gpt / roberta2gpt and decoding follow one convention. What a
vocabulary cannot represent at all (accents an uncased vocabulary strips, pieces a SentencePiece model lacks) is
found by `representation_losses` and counted per split when the data is tokenised.
"""

from __future__ import annotations

import re
import unicodedata
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class _Style:
    spacing: str  # Tokenizer.for_text spacing (WordPiece pre-tokenisation)
    clean_up: bool | None  # HF clean_up_tokenization_spaces; None = the tokenizer's own
    collapse_whitespace: bool  # decoded text: one space between words (the text is whitespace-tokenised)
    exact_spacing: bool  # representability: spacing must match too (the metric splits on whitespace)


STYLES: dict[str, _Style] = {
    # Whitespace-tokenised text, scored on whitespace tokens (SARI, Exact, NLTK BLEU): every space and join counts.
    "tokenized": _Style("exact", False, True, True),
    # Natural text scored by ROUGE (lowercase, alphanumeric runs): spacing around punctuation is invisible.
    "natural": _Style("standard", None, False, False),
    # WMT: mteval-v14 BLEU splits punctuation and symbols itself, except punctuation next to a digit ("1,000").
    "bleu": _Style("digits", False, True, False),
}

# Why a reference does not come back from its own token ids (`representation_losses`), most specific first.
LOSS_UNKNOWN = "unknown pieces"  # the vocabulary maps some characters to its unknown token
LOSS_ACCENTS = "accents stripped"  # an uncased BERT vocabulary strips combining marks (NFD)
LOSS_SPACING = "spacing changed"  # e.g. BERT splits CJK characters apart
LOSS_CHARACTERS = "characters normalised"  # NFKC (SentencePiece's nmt_nfkc), control characters dropped, ...
CASE_FOLDED = "lowercased"  # not a loss: every task's headline metric is case-insensitive


@dataclass(frozen=True)
class TextConvention:
    """How a task's text is written: a style (``STYLES``) and the tokens that must never split.

    Immutable and hashable; ``Task.text_convention`` builds one from the task's ``text_style`` and
    ``atomic_tokens`` options (``bertgen.data.tasks.text_convention`` from a task name, a task or a DataModule).
    """

    style: str = "natural"
    atomic_tokens: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.style not in STYLES:
            raise ValueError(f"text_style must be one of {', '.join(STYLES)}; got {self.style!r}")
        atomic = (self.atomic_tokens,) if isinstance(self.atomic_tokens, str) else self.atomic_tokens
        atomic = tuple(dict.fromkeys(str(t) for t in atomic))
        if any(not t or t != t.strip() for t in atomic):
            raise ValueError(f"atomic_tokens must be non-empty strings without surrounding spaces; got {atomic!r}")
        object.__setattr__(self, "atomic_tokens", atomic)

    @property
    def _style(self) -> _Style:
        return STYLES[self.style]

    @property
    def spacing(self) -> str:
        return self._style.spacing

    @property
    def clean_up(self) -> bool | None:
        return self._style.clean_up

    # ---- tokenizers ---------------------------------------------------------------------------------------------
    def prepare(self, tokenizer: Any) -> Any:
        """The tokenizer set up for this convention (``Tokenizer.for_text``); cached per tokenizer object, and a
        tokenizer already prepared for this convention is returned as it is."""
        if getattr(tokenizer, "convention", None) == self:
            return tokenizer
        try:
            cache = _PREPARED.setdefault(tokenizer, {})
        except TypeError:  # not weak-referenceable: no cache
            cache = {}
        if self not in cache:
            cache[self] = tokenizer.prepared_for(self)
        return cache[self]

    # ---- strings ------------------------------------------------------------------------------------------------
    def finish(self, text: str) -> str:
        """Decoded text -> the task's form: one space on each side of an atomic token (SentencePiece and byte-level
        BPE decode a separator unspaced, ``a .<::::>b``), whitespace collapsed for whitespace-tokenised
        styles, the ends stripped. A pure string function: apply it to transformers' ``decode`` output too."""
        for token in self.atomic_tokens:
            if token in text:
                text = re.sub(rf"[ \t]*{re.escape(token)}[ \t]*", f" {token} ", text)
        return " ".join(text.split()) if self._style.collapse_whitespace else text.strip()

    def canonical(self, text: str) -> str:
        """The form in which a reference and its decoded ids must agree to count as representable: whitespace
        collapsed where the metric splits on it, removed where it cannot see spacing (ROUGE, v14 BLEU)."""
        return " ".join(text.split()) if self._style.exact_spacing else "".join(text.split())


_PREPARED: weakref.WeakKeyDictionary[Any, dict[TextConvention, Any]] = weakref.WeakKeyDictionary()


def _as_rows(sequences: torch.Tensor | Sequence[Sequence[int]]) -> list[list[int]]:
    if isinstance(sequences, torch.Tensor):
        return sequences.tolist()
    return [s.tolist() if hasattr(s, "tolist") else [int(t) for t in s] for s in sequences]


def structural_ids(tokenizer: Any, convention: TextConvention | None = None) -> set[int]:
    """Ids that are never text: start, end, padding, [CLS]/[SEP], mask (not unknown, not the atomic tokens)."""
    ids = {getattr(tokenizer, f"{k}_token_id", None) for k in ("bos", "eos", "pad", "cls", "sep", "mask")}
    atomic = {tokenizer.token_to_id(t) for t in (convention.atomic_tokens if convention else ())}
    return {int(i) for i in ids if i is not None} - atomic


def decode_text(tokenizer: Any, id_lists: Iterable[Sequence[int]], convention: TextConvention) -> list[str]:
    """Token ids that are all text (no start column, nothing after the end) -> the task's text. Ids that are never
    text (`structural_ids`) are dropped; the unknown token stays visible."""
    tok = convention.prepare(tokenizer)
    drop = structural_ids(tok, convention)
    bodies = [[t for t in ids if t not in drop] for ids in _as_rows(list(id_lists))]
    return [convention.finish(t) for t in tok.batch_decode(bodies, skip_special_tokens=False)]


def decode_generated(
    tokenizer: Any,
    sequences: torch.Tensor | Sequence[Sequence[int]],
    *,
    eos_token_ids: Iterable[int] = (),
    drop_ids: Iterable[int] = (),
    convention: TextConvention | None = None,
) -> list[str]:
    """Decode generated sequences that start with one start column (encoder-decoders: the decoder start token;
    decoder-only models: the separator): cut each at its first EOS after position 0, drop ``drop_ids``, decode.

    The text convention is the one the tokenizer was prepared for (``tokenizer.convention``, what the DataModule's
    tokenizers carry), or ``convention`` to decode with a raw tokenizer (it is prepared here: ids the prepared one
    added still decode); the text is put in the task's form (`TextConvention.finish`). A raw tokenizer without a
    convention decodes as it is, whitespace collapsed.
    """
    eos = {int(t) for t in eos_token_ids}
    drop = {int(t) for t in drop_ids}
    bodies = []
    for seq in _as_rows(sequences):
        cut = next((i for i, t in enumerate(seq) if i > 0 and t in eos), len(seq))
        bodies.append([t for t in seq[1:cut] if t not in drop])
    convention = convention or getattr(tokenizer, "convention", None)
    if convention is not None:
        return decode_text(tokenizer, bodies, convention)
    return [" ".join(tokenizer.decode(ids, skip_special_tokens=False).split()) for ids in bodies]


# ---- what a vocabulary cannot represent --------------------------------------------------------------------------
def _strip_accents(text: str) -> str:
    """BERT's accent stripping: NFD, then drop combining marks (Mn)."""
    return "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")


def representation_losses(
    tokenizer: Any, texts: Sequence[str], id_lists: Sequence[Sequence[int]], convention: TextConvention
) -> list[str | None]:
    """For each text and its token ids (the whole text: untruncated, no start or end token), why decoding the ids
    does not give the text back: None (it does), `CASE_FOLDED` (only the case differs: not a loss, the task
    metrics fold case) or a loss (`LOSS_UNKNOWN`, `LOSS_ACCENTS`, `LOSS_SPACING`, `LOSS_CHARACTERS`)."""
    tok = convention.prepare(tokenizer)
    rows = _as_rows(list(id_lists))
    decoded = decode_text(tok, rows, convention)
    unk = tok.unk_token_id
    unk = None if unk is None or unk in structural_ids(tok, convention) else unk  # GPT-2: unk is the eos
    out: list[str | None] = []
    for text, ids, dec in zip(texts, rows, decoded):
        ref, got = convention.canonical(text), convention.canonical(dec)
        if ref == got:
            out.append(None)
        elif ref.lower() == got.lower():
            out.append(CASE_FOLDED)
        elif unk is not None and unk in ids:
            out.append(LOSS_UNKNOWN)
        elif _strip_accents(ref).lower() == got.lower():
            out.append(LOSS_ACCENTS)
        elif "".join(ref.split()).lower() == "".join(got.split()).lower():
            out.append(LOSS_SPACING)
        else:
            out.append(LOSS_CHARACTERS)
    return out


def is_loss(reason: str | None) -> bool:
    return reason is not None and reason != CASE_FOLDED


def describe_losses(n_lost: int, n_total: int, reasons: dict[str, int], what: str = "targets") -> str:
    """ "412 of 3,003 targets not exactly representable: accents stripped 400, unknown pieces 12"."""
    detail = ", ".join(f"{r} {n:,}" for r, n in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0])))
    return f"{n_lost:,} of {n_total:,} {what} not exactly representable: {detail}"

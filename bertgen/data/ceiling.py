"""The reference ceiling: the task's metrics of the references passed through the model's own encode/decode.

A model that reproduced every target perfectly would be scored on exactly this text: the tokenised targets as the
DataModule produces them (the task's text convention, truncation to ``max_target_length``, the end token), decoded
by the pipeline's one ids-to-text function (``bertgen.text.decode_generated``) and scored against the raw references
by the task's metrics (``Task.metrics``). It tells before any training whether a tokenizer can reach
the paper's numbers at all, and what to count out: the result also scores the representable targets alone
(those the vocabulary gives back and that are not truncated).

    from bertgen.data import Seq2SeqDataModule
    from bertgen.data.ceiling import reference_ceiling
    dm = Seq2SeqDataModule("discofuse", "google-bert/bert-base-uncased", data_dir="data/discofuse", batch_size=64)
    reference_ceiling(dm, "validation")["score"]     # SARI of the references through BERT's WordPiece

    bertgen-data ceiling --task discofuse --tokenizer google-bert/bert-base-uncased --data-dir data/discofuse
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from bertgen.text import CASE_FOLDED, decode_generated, is_loss, representation_losses

TRUNCATED = "truncated"  # longer than max_target_length: not a vocabulary loss, but the model cannot produce it


def reference_ceiling(
    datamodule: Any,
    split: str = "validation",
    metrics_task: str | None = None,
    *,
    max_examples: int | None = None,
    batch_size: int = 512,
) -> dict[str, Any]:
    """Score the references of ``split`` decoded from their own token ids (see the module docstring).

    ``metrics_task``: score with another registered task's metrics (default: the task's own).
    ``max_examples``: the first examples of the split only. Returns ``score`` (the headline metric over all the
    examples) and ``metrics`` (every metric), ``representable`` (the same over the targets that come back exactly
    and are not truncated), ``not_representable`` (reason -> count, ``truncated`` among them), ``lowercased``
    (targets that come back lowercased: no loss for the headline metrics, which fold case), ``examples``,
    ``headline``, the task, split, tokenizer and text convention.
    """
    from bertgen.data.tasks import task_metrics

    task = datamodule.task
    metrics_task = metrics_task or task.name
    everything, headline = task_metrics(metrics_task)  # an unknown name fails here, listing the known ones
    representable, _ = task_metrics(metrics_task)
    dataset = datamodule.setup_split(split)
    tok = datamodule.tokenizers[1]
    convention = datamodule.text_convention
    eos = datamodule.special_tokens.eos if task.add_target_eos else None
    n = len(dataset) if max_examples is None else min(len(dataset), int(max_examples))
    counts: dict[str, int] = {}
    lowercased = kept = 0
    room = task.max_target_length - (1 if eos is not None else 0)
    for start in range(0, n, batch_size):
        items = [dataset[k] for k in range(start, min(n, start + batch_size))]
        index = [i for i, _, _ in items]
        references = [dataset.target(i) for i in index]
        sources = [dataset.source(i) for i in index]
        # one start column, as generated sequences have; cut at the end token like a prediction
        sequences = [[0] + ids.tolist() for _, _, ids in items]
        predictions = decode_generated(
            tok, sequences, eos_token_ids=[] if eos is None else [eos], convention=convention
        )
        everything.update(predictions, [[r] for r in references], sources)
        whole = convention.prepare(tok).batch_encode(references)
        reasons = representation_losses(tok, references, whole, convention)
        keep = []
        for j, (ids, reason) in enumerate(zip(whole, reasons)):
            lowercased += reason == CASE_FOLDED
            lost = reason if is_loss(reason) else (TRUNCATED if len(ids) > room else None)
            if lost is None:
                keep.append(j)
            else:
                counts[lost] = counts.get(lost, 0) + 1
        if keep:
            representable.update(
                [predictions[j] for j in keep], [[references[j]] for j in keep], [sources[j] for j in keep]
            )
            kept += len(keep)
    scores = {k: float(v) for k, v in everything.compute().items()} if n else {}
    kept_scores = {k: float(v) for k, v in representable.compute().items()} if kept else {}
    return {
        "task": task.name,
        "metrics_task": metrics_task,
        "split": split,
        "headline": headline,
        "examples": n,
        "score": scores.get(headline),
        "metrics": scores,
        "representable": {"examples": kept, "score": kept_scores.get(headline), "metrics": kept_scores},
        "not_representable": dict(sorted(counts.items())),
        "lowercased": lowercased,
        "tokenizer": repr(tok),
        "text_convention": asdict(convention),
    }


def format_ceiling(result: dict[str, Any]) -> str:
    """One readable paragraph of a `reference_ceiling` result."""
    h = result["headline"]
    rep = result["representable"]
    lines = [
        f"{result['task']}/{result['split']} through {result['tokenizer']} "
        f"({result['text_convention']['style']} text): {h} ceiling "
        f"{_num(result['score'])} over {result['examples']:,} references"
    ]
    lost = result["examples"] - rep["examples"]
    if lost:
        why = ", ".join(f"{r} {k:,}" for r, k in sorted(result["not_representable"].items(), key=lambda kv: -kv[1]))
        lines.append(
            f"  {lost:,} not exactly representable ({why}); the other {rep['examples']:,} score "
            f"{h} {_num(rep['score'])}"
        )
    if result["lowercased"]:
        lines.append(f"  {result['lowercased']:,} come back lowercased (no loss for {h}, which folds case)")
    lines.append("  " + ", ".join(f"{k} {v:.2f}" for k, v in result["metrics"].items()))
    return "\n".join(lines)


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def _key_value(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def configure(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``bertgen-data ceiling`` (and ``python -m bertgen.data.ceiling``)."""
    from bertgen.data.tasks import TASKS

    parser.add_argument("--task", required=True, choices=sorted(TASKS), help="the task")
    parser.add_argument("--tokenizer", required=True, help="source tokenizer: folder, vocabulary file or hub id")
    parser.add_argument("--target-tokenizer", help="target tokenizer when it differs (bert2gpt, roberta2gpt)")
    parser.add_argument("--data-dir", help="the task's files in their release layout")
    parser.add_argument(
        "--data-file",
        action="append",
        type=_key_value,
        default=[],
        metavar="SPLIT=PATH",
        help="one split's file (repeatable)",
    )
    parser.add_argument(
        "--option",
        action="append",
        type=_key_value,
        default=[],
        metavar="KEY=VALUE",
        help="a task option (repeatable; VALUE is JSON or a string), e.g. max_target_length=512",
    )
    parser.add_argument("--split", default="validation")
    parser.add_argument("--metrics", help="score with another task's metrics (default: the task's own)")
    parser.add_argument("--max-examples", type=int)
    parser.add_argument("--cache-dir")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def run(args: argparse.Namespace) -> int:
    from bertgen.data.datamodule import Seq2SeqDataModule

    dm = Seq2SeqDataModule(
        args.task,
        args.tokenizer,
        target_tokenizer=args.target_tokenizer,
        data_dir=args.data_dir,
        data_files=dict(args.data_file) or None,
        task_options=dict(args.option),
        cache_dir=args.cache_dir,
        batch_size=1,
    )
    result = reference_ceiling(dm, args.split, args.metrics, max_examples=args.max_examples)
    print(json.dumps(result, indent=2) if args.json else format_ceiling(result))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bertgen.data.ceiling --task <task> --tokenizer <folder or hub id> [--data-dir DIR]``."""
    from bertgen.errors import BertgenError

    parser = argparse.ArgumentParser(prog="python -m bertgen.data.ceiling", description=__doc__.split("\n\n")[0])
    configure(parser)
    try:
        return run(parser.parse_args(argv))
    except BertgenError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

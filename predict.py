"""Apply a trained model to raw text: ``python predict.py ckpt=<...> input=<file | -> [output=<file>]``.

``ckpt``: a train.py run dir, a ``.ckpt``, a model folder (an exported ``model/`` carries its task and input
conventions in ``bertgen.json``) or a hub id; ``task=<name>`` only for a checkpoint without conventions (a released
one). Input: plain lines, TSV / CSV with a header or JSONL (``column=``), or ``-`` for standard input, decoded in
chunks as it arrives. Output: one prediction per line, or JSONL (``source``, ``prediction``, ``score``, ``nbest``),
in input order; a one-line summary on stderr. Everything else is in `bertgen.prediction` and ``conf/predict.yaml``.

Why a Hydra entry point (not a ``bertgen predict`` subcommand): train.py and evaluate.py are Hydra apps, so every
command takes ``key=value`` overrides, the same ``task=`` group and the same ``generation.*`` keys.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf


def options(cfg: DictConfig):
    from bertgen.prediction import PredictOptions

    plain: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
    return PredictOptions(**plain)


@hydra.main(config_path="conf", config_name="predict", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from bertgen.errors import BertgenError, report
    from bertgen.prediction import run_predict

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    try:
        run_predict(options(cfg))
    except BertgenError as e:
        print(report(e), file=sys.stderr)
        sys.exit(1)
    except BrokenPipeError:  # `predict.py ... | head`: the reader is gone
        sys.stderr.close()
        sys.exit(1)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()

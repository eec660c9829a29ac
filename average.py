"""Average checkpoints of one run into a model folder: ``python average.py run_dir=<run> last=3 out=<folder>``.

``last=N`` (highest training steps) or ``best=N`` (best headline scores) of ``run_dir/checkpoints``, or
``checkpoints=[a.ckpt,b.ckpt]``; checkpoints of different runs or shapes are refused. The folder is an exported
model (``evaluate.py ckpt=<out>``, ``predict.py ckpt=<out>``); see `bertgen.averaging`.
"""

from __future__ import annotations

import logging
import sys

import hydra
from omegaconf import DictConfig, OmegaConf


@hydra.main(config_path="conf", config_name="average", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from bertgen.averaging import AveragingError, average_run
    from bertgen.errors import BertgenError, report

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    c = OmegaConf.to_container(cfg, resolve=True)
    try:
        if not c.get("out"):
            raise AveragingError("out is required: out=<folder for the averaged model>")
        out = average_run(
            c.get("run_dir"), c["out"], last=c.get("last"), best=c.get("best"), checkpoints=c.get("checkpoints")
        )
    except BertgenError as e:
        print(report(e), file=sys.stderr)
        sys.exit(1)
    print(f"averaged model: {out}")


if __name__ == "__main__":
    main()

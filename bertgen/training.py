"""What a training run is built from, as plain functions of plain config values: tokenizers, the model spec, the
special tokens, the global batch, the Trainer's arguments and the checkpoint to resume from. ``train.py`` calls
these in order."""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bertgen.errors import ConfigError

log = logging.getLogger("bertgen.train")

# What Lightning's Trainer accepts as precision (lightning.fabric.connector._PRECISION_INPUT_STR).
PRECISIONS = (
    "transformer-engine",
    "transformer-engine-float16",
    "16-true",
    "16-mixed",
    "bf16-true",
    "bf16-mixed",
    "32-true",
    "64-true",
    "64",
    "32",
    "16",
    "bf16",
)
# Trainer arguments a run sets itself (from other config keys), so they are not taken from ``trainer``.
TRAINER_ARGS_SET_BY_RUN = ("callbacks", "logger", "default_root_dir", "accumulate_grad_batches", "deterministic")


def load_tokenizers(
    model: Mapping[str, Any], task: Mapping[str, Any], run_dir: Path, data_dir: Path | None, resuming: bool = False
):
    """(source, target) tokenizers of a model config; ``train_sentencepiece`` trains one into the run dir. A resumed
    run keeps the tokenizer it trained: with other options it is refused (nothing is retrained or rewritten)."""
    from bertgen.tokenization import load_tokenizer, train_sentencepiece

    def one(spec, name):
        if spec is None:
            return None
        if isinstance(spec, Mapping) and "train_sentencepiece" in spec:
            from bertgen.data.tasks import task_class

            cls = task_class(task)
            if not cls.synthetic:
                raise ConfigError(
                    "model.tokenizer.train_sentencepiece is supported for the synthetic quickstart corpus only"
                )
            opts = dict(spec["train_sentencepiece"])
            texts = list(cls.corpus_texts(data_dir))
            key = hashlib.sha256(json.dumps([opts, texts], sort_keys=True).encode("utf-8")).hexdigest()
            marker = run_dir / name / "bertgen_trained_on.txt"
            if marker.is_file() and marker.read_text(encoding="utf-8").strip() == key:
                # a resumed run keeps the vocabulary it was trained with (never a retrained, possibly other one)
                log.info("reusing the tokenizer trained for this run in %s", run_dir / name)
                return load_tokenizer(run_dir / name)
            if resuming and marker.is_file():
                raise ConfigError(
                    f"ckpt_path: the run trained its {name} in {run_dir / name} with other options or text than "
                    f"model.{name}.train_sentencepiece={opts} asks for now: resuming would change what its ids mean. "
                    "Drop the changed model.*.train_sentencepiece override, or train into a new run dir"
                )
            try:
                tok = train_sentencepiece(texts, output_dir=run_dir / name, **opts)
            except (TypeError, ValueError) as e:  # a bad option or a vocabulary larger than the corpus allows
                raise ConfigError(f"model.{name}.train_sentencepiece={opts}: {e}") from e
            marker.write_text(key + "\n", encoding="utf-8")
            return tok
        return load_tokenizer(str(spec))

    src = one(model.get("tokenizer"), "tokenizer")
    if src is None:
        raise ConfigError("model.tokenizer is not set: a folder, hub id or {train_sentencepiece: ...}")
    return src, one(model.get("target_tokenizer"), "target_tokenizer") or src


def run_fingerprints(dm, lit) -> dict[str, str]:
    """What makes a checkpoint's weights mean something (``bertgen.checkpoints.check_resume``): the prepared
    tokenizers' files, the architecture (the model config without dropout), the task's encoding."""
    src, tgt = dm.token_fingerprints()
    config = {k: v for k, v in lit.hparams["model_config"]["config"].items() if "dropout" not in k}
    encode = dataclasses.asdict(dm.encode_options())

    def digest(obj: Any) -> str:
        return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]

    return {
        "source_tokenizer": src,
        "target_tokenizer": tgt,
        "model": digest(config),
        "encode": digest(encode),
        "task": dm.task.name,
    }


def write_run_config(cfg, run_dir: Path) -> None:
    """``.hydra/config.yaml``, ``overrides.yaml`` and ``hydra.yaml`` of the run, written by the run itself once the
    checks passed (``hydra.output_subdir`` is null): a refused run leaves the run dir's config as it was."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    from bertgen.io import write_text_atomic

    folder = run_dir / ".hydra"
    hc = HydraConfig.get()
    task_cfg = OmegaConf.create({k: cfg[k] for k in cfg if k != "hydra"})
    write_text_atomic(folder / "config.yaml", OmegaConf.to_yaml(task_cfg))
    write_text_atomic(folder / "overrides.yaml", OmegaConf.to_yaml(OmegaConf.create(list(hc.overrides.task))))
    write_text_atomic(folder / "hydra.yaml", OmegaConf.to_yaml(OmegaConf.create({"hydra": hc})))


def model_spec(model: Mapping[str, Any], src_tok, tgt_tok, special: Mapping[str, int | None]) -> dict[str, Any]:
    """The model config with random sides completed from the tokenizers (vocabulary size, special tokens)."""
    spec = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in model.items()}
    spec["source_pad_token_id"] = src_tok.pad_token_id
    for side, tok in (("encoder", src_tok), ("decoder", tgt_tok)):
        value = spec.get(side)
        spec[f"{side}_vocab_size"] = vocab_rows(tok)
        if isinstance(value, dict):
            if value.get("vocab_size") is None:
                value["vocab_size"] = vocab_rows(tok)
            value.setdefault("pad_token_id", special["pad_token_id"] if side == "decoder" else (tok.pad_token_id or 0))
            value.setdefault("bos_token_id", tok.bos_token_id)
            value.setdefault("eos_token_id", tok.eos_token_id)
    keys = (
        "kind",
        "encoder",
        "decoder",
        "pretrained",
        "tie_encoder_decoder",
        "share_embeddings",
        "cross_attention_init",
        "overrides",
        "encoder_vocab_size",
        "decoder_vocab_size",
        "init",
        "encoder_layers",
        "decoder_layers",
        "source_pad_token_id",
    )
    return {k: spec.get(k) for k in keys}


def vocab_rows(tok) -> int:
    """Embedding rows a tokenizer needs: its length, or its largest id + 1 where a vocabulary file has gaps (the
    shared RoBERTa vocab.json)."""
    return max(len(tok), max(tok.get_vocab().values(), default=-1) + 1)


def world_size(trainer: Mapping[str, Any]) -> int:
    devices = trainer.get("devices", 1)
    if devices in ("auto", -1, "-1"):
        import torch

        devices = torch.cuda.device_count() if trainer.get("accelerator") in ("gpu", "cuda") else 1
    n = len(devices) if isinstance(devices, (list, tuple)) else int(devices)
    return max(1, n) * int(trainer.get("num_nodes") or 1)


def accumulation(global_batch: int | None, batch_size: int | None, world: int, max_tokens: int | None) -> int:
    """Gradient accumulation that keeps the paper's global batch when devices change."""
    if max_tokens or not global_batch or not batch_size:
        return 1
    per_step = batch_size * world
    if global_batch % per_step:
        raise ConfigError(
            f"global_batch_size {global_batch} is not a multiple of batch_size {batch_size} x {world} devices; "
            "change batch_size or global_batch_size"
        )
    return global_batch // per_step


def trainer_arguments(trainer: Mapping[str, Any]) -> dict[str, Any]:
    """``trainer`` as ``lightning.Trainer`` keyword arguments. Every Trainer argument is listed in
    ``conf/trainer/default.yaml`` (so ``trainer.<arg>=<value>`` works without ``+``); anything else is refused here
    with its name, as are the arguments a run sets itself."""
    import lightning as L

    known = set(inspect.signature(L.Trainer.__init__).parameters) - {"self"}
    args = dict(trainer)
    unknown = sorted(set(args) - known)
    if unknown:
        raise ConfigError(
            f"trainer: {', '.join(unknown)} {'is not a' if len(unknown) == 1 else 'are not'} "
            f"lightning.Trainer argument{'s' if len(unknown) > 1 else ''}"
        )
    strategy = str(args.get("strategy") or "")
    if strategy.startswith("fsdp") and str(args.get("accelerator")) not in ("gpu", "cuda"):
        raise ConfigError(
            f"trainer.strategy={strategy} needs CUDA GPUs (Lightning's FSDPStrategy refuses "
            f"accelerator={args.get('accelerator')}): use it with trainer=ddp or trainer=multinode; on "
            "CPU processes use trainer=ddp_cpu (data parallel, full copies)"
        )
    owned = sorted(set(args) & set(TRAINER_ARGS_SET_BY_RUN) - {"accumulate_grad_batches"})
    if owned:
        raise ConfigError(
            f"trainer: {', '.join(owned)} {'is' if len(owned) == 1 else 'are'} set by the run itself "
            "(callbacks/logger config groups, the run dir, deterministic=)"
        )
    return args


# ---- start-up validation: every error names its key, before any data or model work ---------------------------------
def _check(
    key: str,
    value: Any,
    kind: type | tuple[type, ...],
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    optional: bool = False,
) -> None:
    if value is None:
        if optional:
            return
        raise ConfigError(f"{key} is not set")
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
        names = " or ".join(k.__name__ for k in kinds)
        raise ConfigError(f"{key}={value!r}: expected {names}{' or null' if optional else ''}")
    if low is not None and (value <= low if low_open else value < low):
        raise ConfigError(f"{key}={value!r}: must be {'>' if low_open else '>='} {low}")
    if high is not None and (value >= high if high_open else value > high):
        raise ConfigError(f"{key}={value!r}: must be {'<' if high_open else '<='} {high}")


def validate_config(c: Mapping[str, Any]) -> None:
    """Types, ranges and consistency of a composed train config (plain dict)."""
    num = (int, float)
    _check("seed", c.get("seed"), int, low=0, high=2**32 - 1)  # numpy's seed range
    _check("batch_size", c.get("batch_size"), int, low=1, optional=True)
    _check("global_batch_size", c.get("global_batch_size"), int, low=1, optional=True)
    _check("max_tokens", c.get("max_tokens"), int, low=1, optional=True)
    cb = (c.get("callbacks") or {}).get("checkpoint") or {}
    _check("callbacks.checkpoint.every_n_train_steps", cb.get("every_n_train_steps"), int, low=1, optional=True)
    _check(
        "callbacks.checkpoint.every_n_minutes",
        cb.get("every_n_minutes"),
        (int, float),
        low=0,
        low_open=True,
        optional=True,
    )
    if cb.get("every_n_train_steps") and cb.get("every_n_minutes"):
        raise ConfigError("callbacks.checkpoint: set every_n_train_steps or every_n_minutes, not both")
    if c.get("batch_size") is None and c.get("max_tokens") is None:
        raise ConfigError("batch_size and max_tokens are both null: set one")
    _check("num_workers", c.get("num_workers"), int, low=0)
    _check("num_threads", c.get("num_threads"), int, low=1, optional=True)
    _check("label_smoothing", c.get("label_smoothing"), num, low=0, high=1, high_open=True)
    for key in (
        "deterministic",
        "gradient_checkpointing",
        "compile",
        "export_model",
        "test_after_training",
        "skip_invalid",
    ):
        _check(key, c.get(key), bool)
    task, optim, trainer = c["task"], c["optim"], c["trainer"]
    cross_init = (c.get("model") or {}).get("cross_attention_init")
    if cross_init not in (None, "random", "self_attention"):
        raise ConfigError(f"model.cross_attention_init={cross_init!r}: expected random or self_attention")
    _check_init_options(c.get("model") or {}, optim, trainer)
    _check("task.train_fraction", task.get("train_fraction"), num, low=0, low_open=True, high=1)
    _check("task.val_max_examples", task.get("val_max_examples"), int, low=1, optional=True)
    _check("optim.lr", optim.get("lr"), num, low=0, low_open=True, optional=optim.get("name") == "paper")
    _check("optim.constant", optim.get("constant"), num, low=0, low_open=True, optional=optim.get("name") != "paper")
    _check("optim.warmup_steps", optim.get("warmup_steps"), int, low=0, optional=True)
    _check("optim.weight_decay", optim.get("weight_decay"), num, low=0, optional=True)
    _check("optim.eps", optim.get("eps"), num, low=0, low_open=True, optional=True)
    for i, b in enumerate(optim.get("betas") or ()):
        _check(f"optim.betas[{i}]", b, num, low=0, high=1, high_open=True)
    _check("trainer.max_steps", trainer.get("max_steps"), int, low=-1)
    if trainer.get("max_steps") == 0:
        raise ConfigError(
            "trainer.max_steps=0: nothing would be trained; set a number of steps (or -1 with max_epochs)"
        )
    precision = trainer.get("precision")
    if precision is not None and str(precision) not in PRECISIONS:
        raise ConfigError(f"trainer.precision={precision!r}: expected one of {', '.join(PRECISIONS)}")
    devices = trainer.get("devices")
    if not (
        devices in ("auto", -1, "-1")
        or isinstance(devices, int)
        and not isinstance(devices, bool)
        and devices >= 1
        or isinstance(devices, (list, tuple))
        and devices
        and all(isinstance(d, int) and d >= 0 for d in devices)
        or isinstance(devices, str)
        and devices.replace(",", "").strip().isdigit()
        and int(devices.split(",")[0]) >= 0
    ):
        raise ConfigError(f"trainer.devices={devices!r}: expected a count >= 1, a list of device ids, -1 or auto")
    _check("trainer.max_epochs", trainer.get("max_epochs"), int, low=-1, optional=True)
    _check("trainer.accumulate_grad_batches", trainer.get("accumulate_grad_batches"), int, low=1, optional=True)
    _check("trainer.gradient_clip_val", trainer.get("gradient_clip_val"), num, low=0, optional=True)
    _check("trainer.log_every_n_steps", trainer.get("log_every_n_steps"), int, low=1, optional=True)
    vci = trainer.get("val_check_interval")
    if isinstance(vci, float):
        _check("trainer.val_check_interval", vci, float, low=0, low_open=True, high=1)
    else:
        _check("trainer.val_check_interval", vci, int, low=1, optional=True)
    if trainer.get("max_steps") == -1 and trainer.get("max_epochs") == -1 and not trainer.get("max_time"):
        raise ConfigError("trainer.max_steps=-1 with no max_epochs or max_time: the run would never stop")
    if not trainer.get("accumulate_grad_batches"):
        accumulation(c.get("global_batch_size"), c.get("batch_size"), world_size(trainer), c.get("max_tokens"))


OPTIMIZERS = ("paper", "adamw", "adafactor")
INIT_MODES = ("all", "all_but_embeddings", "embeddings_only")  # = bertgen.model.hf_weights.INIT_MODES


def _check_init_options(model: Mapping[str, Any], optim: Mapping[str, Any], trainer: Mapping[str, Any]) -> None:
    """model.init, model.encoder_layers / decoder_layers, optim.freeze_warm_started_steps and the optimiser's own
    keys, against the model's sides (a mapping = a random side, a string = a checkpoint). Layer indices are checked
    against the checkpoint when it is loaded (`build_module`)."""
    name = optim.get("name", "paper")
    if name not in OPTIMIZERS:
        raise ConfigError(f"optim.name={name!r}: expected one of {', '.join(OPTIMIZERS)}")
    if name == "adafactor":
        _check("optim.beta2_decay", optim.get("beta2_decay"), (int, float), low=-1, high=0, optional=True)
        _check("optim.eps1", optim.get("eps1"), (int, float), low=0, low_open=True, optional=True)
        _check("optim.eps2", optim.get("eps2"), (int, float), low=0, optional=True)
        _check("optim.clip_threshold", optim.get("clip_threshold"), (int, float), low=0, low_open=True, optional=True)
    init = model.get("init")
    if init is not None and init not in INIT_MODES:
        raise ConfigError(f"model.init={init!r}: expected one of {', '.join(INIT_MODES)}")
    decoder_only = model.get("kind") == "decoder_only"
    if model.get("pretrained"):
        sides: dict[str, bool] = {}  # a whole model: no side of its own to choose parts of
    elif decoder_only:
        sides = {"decoder": isinstance(model.get("decoder"), Mapping)}
    else:
        sides = {s: isinstance(model.get(s), Mapping) for s in ("encoder", "decoder")}
    for side in ("encoder", "decoder"):
        key, layers = f"model.{side}_layers", model.get(f"{side}_layers")
        if layers is None:
            continue
        if side not in sides:
            what = "a decoder-only model has no encoder" if decoder_only else "model.pretrained is a whole model"
            raise ConfigError(f"{key}={layers}: {what}; leave it null")
        if isinstance(layers, int) and not isinstance(layers, bool):
            _check(key, layers, int, low=1)
        elif isinstance(layers, (list, tuple)):
            if sides[side]:
                raise ConfigError(
                    f"{key}={list(layers)}: the {side} is random (model.{side} is a config), so there are no "
                    "checkpoint layers to pick; give a layer count or null"
                )
            if not layers or not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in layers):
                raise ConfigError(f"{key}={list(layers)}: expected a non-empty list of 0-based layer indices")
            if len(set(layers)) != len(layers):
                raise ConfigError(f"{key}={list(layers)}: a layer is listed twice")
        else:
            raise ConfigError(f"{key}={layers!r}: expected a layer count, a list of 0-based layer indices or null")
    if model.get("tie_encoder_decoder") and _layer_list(model.get("encoder_layers")) != _layer_list(
        model.get("decoder_layers")
    ):
        raise ConfigError(
            f"model.encoder_layers={model.get('encoder_layers')} and model.decoder_layers="
            f"{model.get('decoder_layers')}: model.tie_encoder_decoder shares one set of layers; set both alike"
        )
    warm = [s for s, random in sides.items() if not random]
    if init not in (None, "all") and not warm:
        raise ConfigError(
            f"model.init={init}: model {model.get('name')} warm-starts nothing (no checkpoint side"
            f"{'; model.pretrained loads a whole model' if model.get('pretrained') else ''}); leave model.init=all"
        )
    freeze = optim.get("freeze_warm_started_steps")
    _check("optim.freeze_warm_started_steps", freeze, int, low=0, optional=True)
    if freeze:
        if not warm:
            raise ConfigError(
                f"optim.freeze_warm_started_steps={freeze}: model {model.get('name')} has no warm-started "
                "parameters to freeze (no checkpoint side); set it to 0"
            )
        max_steps = trainer.get("max_steps")
        if isinstance(max_steps, int) and 0 < max_steps <= freeze:  # fine for a run resumed later with more steps
            log.warning("optim.freeze_warm_started_steps=%d >= trainer.max_steps=%d", freeze, max_steps)


def check_vocabularies(model: Mapping[str, Any]) -> None:
    """A tokenizer named apart from its checkpoint side (``model.tokenizer=<folder>``) must be that checkpoint's
    vocabulary (the same id for each of its tokens; added tokens are fine) unless ``model.init=all_but_embeddings``
    starts new embeddings for it. Checked against the checkpoint folder's own tokenizer files, when it has some (both
    as loaded, before a task's preparation re-uses reserved slots)."""
    from bertgen.errors import BertgenError
    from bertgen.tokenization import load_tokenizer

    if (model.get("init") or "all") == "all_but_embeddings" or model.get("pretrained"):
        return
    target_key = "target_tokenizer" if model.get("target_tokenizer") else "tokenizer"
    for side, key in (("encoder", "tokenizer"), ("decoder", target_key)):
        checkpoint, spec = model.get(side), model.get(key)
        if not isinstance(checkpoint, str) or not isinstance(spec, str) or spec == checkpoint:
            continue
        try:
            own = load_tokenizer(checkpoint).get_vocab()
        except (BertgenError, OSError, ValueError):  # no tokenizer files beside the weights: nothing to compare
            continue
        ids = load_tokenizer(spec).get_vocab()
        differ = [t for t, i in own.items() if ids.get(t) != i]
        if differ:
            raise ConfigError(
                f"model.{key}={spec} is not the vocabulary of model.{side}={checkpoint} ({len(differ)} of its "
                f"{len(own)} tokens are missing or have other ids, e.g. {differ[0]!r}), so the checkpoint's "
                "embeddings would stand for other tokens: set model.init=all_but_embeddings for new embeddings"
            )


def _layer_list(layers) -> list[int] | None:
    """A layer option as indices: a count n is the first n layers."""
    return list(range(layers)) if isinstance(layers, int) else None if layers is None else list(layers)


# ---- the steps of a run, in the order train.py takes them ------------------------------------------------------------
def setup_process(c: Mapping[str, Any]) -> None:
    """Threads, seeds, determinism, and Lightning's messages through the entry point's log handlers only."""
    import lightning as L
    import torch

    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):  # printed by the app's handlers: not twice
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    if c.get("num_threads"):
        torch.set_num_threads(int(c["num_threads"]))
    L.seed_everything(c["seed"], workers=True)
    if c["deterministic"]:
        torch.use_deterministic_algorithms(True)


def build_module(c: Mapping[str, Any], dm):
    """The `Seq2SeqModule` of the config, built with the DataModule's special tokens and checked against its
    tokenizers and length budgets."""
    from bertgen.checks import check_model_and_data
    from bertgen.decoding import check_generation
    from bertgen.lit_module import Seq2SeqModule
    from bertgen.model.hf_weights import InitOptionError

    src_tok, tgt_tok = dm.tokenizers  # prepared for the task's text (e.g. a separator as one token)
    special = dm.special_tokens.model_ids(decoder_only=c["model"]["kind"] == "decoder_only")
    check_vocabularies(c["model"])
    try:
        lit = Seq2SeqModule(
            model=model_spec(c["model"], src_tok, tgt_tok, special),
            optim=c["optim"],
            special_tokens=special,
            generation=c["task"]["generation"],
            label_smoothing=c["label_smoothing"],
            gradient_checkpointing=c["gradient_checkpointing"],
            compile=c["compile"],
        )
    except InitOptionError as e:  # a layer index or a vocabulary that does not fit the checkpoint: name the key
        raise ConfigError(f"model.{e}") from None
    check_model_and_data(
        lit.model,
        src_tok,
        tgt_tok,
        max_source_length=dm.task.max_source_length,
        max_target_length=dm.task.max_target_length,
        where=f"model {c['model']['name']}",
    )
    # decoding settings fail now, naming their key, not at the first validation or after training
    check_generation(lit.model, c["task"]["generation"], "task.generation")
    check_generation(lit.model, {**c["task"]["generation"], **c["task"]["val_generation"]}, "task.val_generation")
    log.info("model %s: %.1fM parameters", c["model"]["name"], sum(p.numel() for p in lit.model.parameters()) / 1e6)
    return lit


def make_trainer(c: Mapping[str, Any], trainer_args: dict[str, Any], callbacks: list, loggers: list, run_dir: Path):
    """``lightning.Trainer`` with the accumulation that keeps the global batch and bertgen's checkpoint IO."""
    import warnings

    import lightning as L

    from bertgen.checkpoints import SafeCheckpointIO

    world = world_size(trainer_args)
    args = dict(trainer_args)
    accumulate = args.pop("accumulate_grad_batches", None) or accumulation(
        c["global_batch_size"], c["batch_size"], world, c["max_tokens"]
    )
    args["plugins"] = [SafeCheckpointIO(), *(args.get("plugins") or [])]  # loud writes, weights-only reads
    per_step = f"{c['max_tokens']} tokens" if c["max_tokens"] else c["batch_size"]
    log.info("global batch: %s x %d devices x %d accumulation", per_step, world, accumulate)
    # The DataModule's batch sampler resumes mid-epoch itself (its state is in the checkpoint); Lightning cannot see
    # that and warns that the dataloader is not resumable.
    warnings.filterwarnings("ignore", message=".*your dataloader is not resumable.*")
    return L.Trainer(
        **args,
        callbacks=callbacks,
        logger=loggers or False,
        accumulate_grad_batches=accumulate,
        deterministic=bool(c["deterministic"]),
        default_root_dir=str(run_dir),
    )


def training_record(
    c: Mapping[str, Any], trainer, lit, dm, best_cb, run_dir: Path, test: bool = False, status: str | None = None
):
    """The run record of a finished fit (and of a test of its best checkpoint when ``test``); ``status``
    ``preempted`` for a fit stopped by SIGTERM."""
    import torch

    from bertgen.data.tasks import task_class
    from bertgen.paper_tables import model_size
    from bertgen.run_record import RunRecord, RunRecordError, metrics_by_split

    logged = {k: float(v) for k, v in trainer.callback_metrics.items() if getattr(v, "numel", lambda: 1)() == 1}
    global_step = trainer.global_step
    last = run_dir / "checkpoints" / "last.ckpt"
    if global_step == 0 and last.is_file():  # spawn strategies train in child processes; the checkpoint knows
        global_step = int(torch.load(last, map_location="cpu", mmap=True, weights_only=True)["global_step"])
    test_metrics: dict[str, float] = {}
    if test:
        trainer.test(lit, datamodule=dm, ckpt_path="best" if best_cb.best_model_path else None)
        test_metrics = metrics_by_split({k: float(v) for k, v in trainer.callback_metrics.items()}).get("test", {})
    task, best = c["task"], best_cb.best_model_score
    validation = metrics_by_split(logged).get("validation", {})
    if not validation and (run_dir / "metrics.json").is_file():
        # a resume that trained nothing more (already at max_steps) validated nothing: the scores of the same weights
        # are the previous record's, which this one replaces
        try:
            before = RunRecord.load(run_dir)
        except (RunRecordError, OSError, ValueError):  # an unreadable old record is simply replaced
            before = None
        if before is not None and before.global_step == global_step:
            validation = dict(before.metrics)
    return logged, RunRecord(
        source="train",
        task=task["name"],
        task_module=task.get("module"),
        model=c["model"]["name"],
        size=model_size(lit.model, c["model"]["name"]),
        split="validation",
        metrics=validation,
        headline=task_class(task).headline,
        test_metrics=test_metrics,
        train_fraction=float(task["train_fraction"]),
        variant=c.get("variant"),
        best_score=float(best) if best is not None else None,
        best_checkpoint=best_cb.best_model_path or None,
        global_step=int(global_step),
        parameters=sum(p.numel() for p in lit.model.parameters()),
        data_stats=dict(getattr(dm, "data_stats", {})),
        status=status,
    )


def print_summary(run_dir: Path, record) -> None:
    """Where the run's outputs are (only those that exist)."""
    print(f"\nrun dir:      {run_dir}")
    print(f"metrics:      {run_dir / 'metrics.json'}  (val/{record.headline} best = {record.best_score})")
    for name, folder in (("predictions", "predictions"), ("model", "model"), ("checkpoints", "checkpoints")):
        if (run_dir / folder).is_dir():
            print(f"{name + ':':13s} {run_dir / folder}")

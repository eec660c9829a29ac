"""Every option of every config group and every experiment composes and resolves (no training; seconds)."""

from __future__ import annotations

import importlib.util
import inspect

import lightning as L
import pytest
from omegaconf import OmegaConf

from bertgen.data import TASKS, task_class
from bertgen.training import TRAINER_ARGS_SET_BY_RUN, trainer_arguments, validate_config

from conftest import REPO, compose

CONF = REPO / "conf"
HAS_OPTUNA = importlib.util.find_spec("hydra_plugins.hydra_optuna_sweeper") is not None
HAS_SUBMITIT = importlib.util.find_spec("hydra_plugins.hydra_submitit_launcher") is not None


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def resolved(cfg) -> dict:
    """Everything but the hydra node, resolved (the loggers' `${hydra:...}` need a running app: left as they are)."""
    return {
        k: OmegaConf.to_container(v, resolve=k != "logger") if OmegaConf.is_config(v) else v
        for k, v in cfg.items()
        if k != "hydra"
    }


GROUPS = ["task", "model", "optim", "trainer", "logger", "callbacks", "debug", "experiment"]


@pytest.mark.parametrize("group, option", [(g, o) for g in GROUPS for o in options(g)])
def test_every_group_option_composes(group, option):
    c = resolved(compose("train", [f"{group}={option}"]))
    assert task_class(c["task"]).name == c["task"]["name"]
    trainer_arguments(c["trainer"])  # every trainer option is a valid set of Trainer arguments
    validate_config(c)
    assert isinstance(c["model"]["name"], str) and c["model"]["kind"] in ("encoder_decoder", "decoder_only")


def test_every_registered_task_has_its_config_and_every_config_names_one():
    """A task is its declaration (bertgen/data/tasks/<name>.py) plus conf/task/<name>.yaml, nothing else."""
    assert set(options("task")) == set(TASKS)
    for name in options("task"):
        assert OmegaConf.load(CONF / "task" / f"{name}.yaml")["name"] == name


@pytest.mark.parametrize("task", options("task"))
def test_tasks_state_only_what_differs_from_the_shared_defaults(task):
    text = (CONF / "task" / f"{task}.yaml").read_text()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        assert not (key == "module" and value.strip() in ("null", "")), f"{task}.yaml restates {key}"
    c = resolved(compose("train", [f"task={task}"]))["task"]
    assert c["name"] == task


@pytest.mark.parametrize("task", options("task"))
@pytest.mark.parametrize("model", options("model"))
def test_every_task_with_every_model(task, model):
    validate_config(resolved(compose("train", [f"task={task}", f"model={model}"])))


def test_trainer_defaults_list_every_lightning_trainer_argument():
    """conf/trainer/default.yaml names every Trainer argument (so trainer.<arg>= works without +)."""
    listed = set(OmegaConf.load(CONF / "trainer" / "default.yaml"))
    known = set(inspect.signature(L.Trainer.__init__).parameters) - {"self"}
    assert listed == known - set(TRAINER_ARGS_SET_BY_RUN) | {"accumulate_grad_batches"}


def test_any_trainer_argument_overrides_without_plus_and_a_misspelt_one_is_named():
    c = resolved(compose("train", ["trainer.limit_val_batches=2", "trainer.max_time=00:01:00:00"]))
    assert c["trainer"]["limit_val_batches"] == 2 and trainer_arguments(c["trainer"])["max_time"] == "00:01:00:00"
    with pytest.raises(Exception, match="limt_val_batches"):
        compose("train", ["trainer.limt_val_batches=2"])
    from bertgen.errors import ConfigError

    with pytest.raises(ConfigError, match="limt_val_batches is not a lightning.Trainer argument"):
        trainer_arguments({**c["trainer"], "limt_val_batches": 2})


@pytest.mark.skipif(not HAS_OPTUNA, reason="hydra-optuna-sweeper not installed (pip install -e '.[sweep]')")
@pytest.mark.parametrize("option", options("hparams_search"))
def test_hparams_search_composes_and_names_a_metric_the_run_returns(option):
    cfg = compose("train", ["experiment=quickstart", f"hparams_search={option}"], return_hydra_config=True)
    assert cfg.hydra.sweeper.direction == "maximize"
    key = cfg.optimized_metric
    assert key == "best_score" or key.split("/", 1)[0] in ("val", "test")


@pytest.mark.skipif(not HAS_SUBMITIT, reason="hydra-submitit-launcher not installed (pip install -e '.[sweep]')")
@pytest.mark.parametrize("option", options("hydra/launcher"))
def test_launchers_compose(option):
    cfg = compose("train", ["trainer=gpu", f"hydra/launcher={option}"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_.startswith("hydra_plugins.hydra_submitit_launcher")


@pytest.mark.parametrize("option", [None, *options("pretrain/experiment")])
def test_pretrain_config_and_its_experiments_compose_and_validate(option):
    from bertgen.pretraining import validate_config as validate_pretrain

    cfg = compose("pretrain", [f"pretrain/experiment={option}"] if option else ["data.files=[x.txt]", "tokenizer=t"])
    c = resolved(cfg)
    trainer_arguments(c["trainer"])
    validate_pretrain(c)
    if option:  # the paper's Table 4 custom BERTs: WMT14 En+De text, BERT's phase-1 length and batch
        assert c["data"]["task"] == "wmt14_en_de" and c["max_length"] == 128 and c["global_batch_size"] == 256
        assert c["model"]["num_hidden_layers"] == (24 if option.endswith("large") else 12)


def test_evaluate_config_composes_with_every_task():
    for task in options("task"):
        cfg = compose("evaluate", [f"task={task}"])
        assert OmegaConf.to_container(cfg, resolve=True)["task"]["name"] == task

"""What is warm-started, and when it trains: model.init, layer subsets, a task-specific vocabulary,
optim.freeze_warm_started_steps (also across a resume inside the freeze) and optim=adafactor, on the real
all-MiniLM-L6-v2 checkpoint (paper Table 6 and §5)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf, open_dict
from safetensors.torch import load_file, save_file

from bertgen.errors import ConfigError
from bertgen.model import EncoderDecoder
from bertgen.model.hf_weights import EMBEDDING_PARAMS, InitOptionError, read_weights
from bertgen.training import validate_config

from conftest import MINILM, SHARED, compose, run_cli

START = dict(decoder_start_token_id=101, eos_token_id=102)
TINY_DECODER = dict(
    family="bert-generation",
    vocab_size=30522,
    hidden_size=384,
    num_hidden_layers=1,
    num_attention_heads=4,
    intermediate_size=64,
)


def is_embedding(name: str) -> bool:
    return name.split(".", 1)[1] in EMBEDDING_PARAMS


def build(seed: int = 0, encoder=MINILM, decoder=MINILM, **kw) -> EncoderDecoder:
    torch.manual_seed(seed)
    return EncoderDecoder.from_encoder_decoder_pretrained(encoder, decoder, **START, **kw)


def warm_names(model: EncoderDecoder) -> set[str]:
    """``model.warm_started`` with every name of a shared parameter (state_dict keys)."""
    ids = {id(p) for n, p in model.named_parameters() if n in set(model.warm_started)}
    return {n for n, p in model.named_parameters(remove_duplicate=False) if id(p) in ids}


def fresh(model: EncoderDecoder, seed: int = 0) -> EncoderDecoder:
    """A random model of the same architecture, built with the same seed."""
    torch.manual_seed(seed)
    return EncoderDecoder(model.config)


# ---- layer subsets --------------------------------------------------------------------------------------------------
def subset_checkpoint(folder: Path, layers: list[int]) -> Path:
    """all-MiniLM-L6-v2 cut down by hand: layers ``layers`` renumbered 0.., the config saying so."""
    folder.mkdir()
    sd = load_file(MINILM / "model.safetensors")
    out = {}
    for k, v in sd.items():
        if k.startswith("encoder.layer."):
            index, rest = k[len("encoder.layer.") :].split(".", 1)
            if int(index) not in layers:
                continue
            k = f"encoder.layer.{layers.index(int(index))}.{rest}"
        out[k] = v.contiguous()
    save_file(out, str(folder / "model.safetensors"))
    config = json.loads((MINILM / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "num_hidden_layers": len(layers)}))
    return folder


def test_a_layer_subset_equals_the_model_built_by_hand_from_those_layers(tmp_path):
    picked = [0, 2, 5]
    ours = build(encoder_layers=picked, decoder_layers=picked)
    by_hand = subset_checkpoint(tmp_path / "cut", picked)
    hand = build(encoder=by_hand, decoder=by_hand)
    a, b = ours.state_dict(), hand.state_dict()
    assert a.keys() == b.keys() and ours.config.encoder.num_hidden_layers == 3
    for k in a:  # every tensor, the random cross-attention included (same seed)
        assert torch.equal(a[k], b[k]), k
    assert ours.warm_started == hand.warm_started and ours.warm_started
    sd = read_weights(MINILM)
    assert torch.equal(ours.encoder.layers[2].mlp.fc.weight, sd["encoder.layer.5.intermediate.dense.weight"])
    # a count is the first n layers; bertShare takes the same subset for its one set of layers
    first = build(encoder_layers=2, decoder_layers=[0, 1], tie_encoder_decoder=True)
    assert len(first.encoder.layers) == 2 and first.encoder.layers[1].attn is first.decoder.layers[1].attn
    assert torch.equal(first.decoder.layers[1].mlp.fc.weight, sd["encoder.layer.1.intermediate.dense.weight"])


def test_a_decoder_only_model_takes_a_layer_subset_too():
    from bertgen.model import DecoderOnlyLM

    lm = DecoderOnlyLM.from_pretrained(MINILM, layers=[4, 1])
    sd = read_weights(MINILM)
    assert len(lm.decoder.layers) == 2 and lm.config.num_hidden_layers == 2
    assert torch.equal(lm.decoder.layers[0].mlp.fc.weight, sd["encoder.layer.4.intermediate.dense.weight"])
    assert torch.equal(lm.decoder.layers[1].mlp.fc.weight, sd["encoder.layer.1.intermediate.dense.weight"])


# ---- model.init -----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def full() -> EncoderDecoder:
    """bert2bert with everything warm-started."""
    return build()


@pytest.mark.parametrize("init", ["all_but_embeddings", "embeddings_only"])
def test_init_warm_starts_exactly_its_part_and_leaves_the_rest_at_the_random_init(init, full):
    ours = build(init=init)
    rnd = fresh(ours)
    checkpoint_names = warm_names(full)
    a, f, r = ours.state_dict(), full.state_dict(), rnd.state_dict()
    compared = {"warm": 0, "random": 0}
    for k in a:
        warm = k in checkpoint_names and (is_embedding(k) == (init == "embeddings_only"))
        expected = f[k] if warm else r[k]
        assert torch.equal(a[k], expected), (k, "checkpoint" if warm else "random")
        compared["warm" if warm else "random"] += 1
    assert compared["warm"] and compared["random"]
    assert sorted(ours.warm_started) == sorted(
        k for k in full.warm_started if is_embedding(k) == (init == "embeddings_only")
    )
    word = ours.encoder.embed.word.weight
    if init == "all_but_embeddings":  # not the checkpoint's, and N(0, 0.02)
        assert not torch.equal(word, full.encoder.embed.word.weight)
        assert abs(word[1:].std().item() - 0.02) < 1e-3 and abs(word.mean().item()) < 1e-3
    else:
        assert torch.equal(word, full.encoder.embed.word.weight)
        layer = ours.encoder.layers[0].mlp.fc.weight
        assert abs(layer.std().item() - 0.02) < 1e-3


def test_a_task_vocabulary_gets_new_embeddings_of_its_size_and_warm_started_layers(full):
    from bertgen.tokenization import train_sentencepiece

    rows = (SHARED / "data" / "wikisplit" / "validation.tsv").read_text(encoding="utf-8").splitlines()[:300]
    texts = [t for row in rows for t in row.split("\t")]
    tok = train_sentencepiece(texts, 300, "bpe", num_threads=1)
    V = len(tok)
    ours = build(
        init="all_but_embeddings",
        encoder_vocab_size=V,
        decoder_vocab_size=V,
        encoder_overrides={"pad_token_id": tok.pad_token_id},
        decoder_overrides={"pad_token_id": tok.pad_token_id},
    )
    assert ours.encoder.embed.word.weight.shape == (V, 384) and ours.config.decoder.vocab_size == V
    assert ours.encoder.embed.word.weight is ours.decoder.embed.word.weight  # one matrix, as the paper's
    for k in ("encoder.layers.3.attn.qkv.weight", "decoder.layers.5.mlp.proj.bias"):
        assert torch.equal(ours.state_dict()[k], full.state_dict()[k])
    assert not any(is_embedding(k) for k in ours.warm_started)
    ids = torch.tensor([tok.encode("The cat sat on the mat .")])
    out = ours(ids, torch.ones_like(ids), labels=ids)
    assert out.logits.shape[-1] == V and torch.isfinite(out.loss)
    # the checkpoint's embeddings with another vocabulary: refused, saying what to do
    with pytest.raises(InitOptionError, match="300 tokens, fewer than the 30522 .*init=all_but_embeddings"):
        build(encoder_vocab_size=V, decoder_vocab_size=V)


# ---- bad combinations: one message at start-up ----------------------------------------------------------------------
def config(*overrides: str) -> dict:
    cfg = compose("train", list(overrides))
    return {
        k: OmegaConf.to_container(v, resolve=k != "logger") if OmegaConf.is_config(v) else v for k, v in cfg.items()
    }


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["model=rnd2rnd", "optim.freeze_warm_started_steps=10"], "no warm-started parameters to freeze"),
        (["model=bert2rnd", "model.decoder_layers=[0,1]"], "model.decoder_layers=\\[0, 1\\]: the decoder is random"),
        (["model=gpt", "model.encoder_layers=2"], "model.encoder_layers=2: a decoder-only model has no encoder"),
        (["model=rnd2rnd", "model.init=embeddings_only"], "model.init=embeddings_only: model rnd2rnd warm-starts"),
        (["model=bertshare", "model.encoder_layers=2", "model.decoder_layers=3"], "shares one set of layers"),
        (["model=bert2bert", "model.init=embeddings"], "model.init='embeddings': expected one of all, all_but_emb"),
        (["model=bert2bert", "model.encoder_layers=[1,1]"], "a layer is listed twice"),
        (["model=bert2bert", "model.encoder_layers=0"], "model.encoder_layers=0: must be >= 1"),
        (["optim=adafactor", "optim.beta2_decay=0.5"], "optim.beta2_decay=0.5: must be <= 0"),
        (["optim.name=sgd"], "optim.name='sgd': expected one of paper, adamw, adafactor"),
    ],
)
def test_a_bad_combination_is_one_config_error_from_validate_config(overrides, message):
    with pytest.raises(ConfigError, match=message):
        validate_config(config(*overrides))


def test_every_variant_composes_with_the_new_options():
    from bertgen import training
    from bertgen.model import hf_weights

    assert training.INIT_MODES == hf_weights.INIT_MODES  # the config check's copy
    layers = {
        "rnd2rnd": "model.encoder_layers=3",  # a count on a random side: its depth
        "bert2rnd": "model.encoder_layers=[0,2]",
        "rnd2bert": "model.decoder_layers=[1]",
        "bert2bert": "model.decoder_layers=4",
        "bertshare": "model.encoder_layers=[8,9]",  # the decoder's follow (tied)
        "robertashare": "model.encoder_layers=2",
        "gpt": "model.decoder_layers=[0,2]",
        "rnd2gpt": "model.decoder_layers=2",
        "bert2gpt": "model.encoder_layers=[1,3]",
        "roberta2gpt": "model.decoder_layers=[5]",
    }
    for model, layer in layers.items():
        init = [] if model == "rnd2rnd" else ["model.init=all_but_embeddings", "optim.freeze_warm_started_steps=3"]
        validate_config(config(f"model={model}", layer, *init, "optim=adafactor"))
        if model != "rnd2rnd":
            validate_config(config(f"model={model}", layer, "model.init=embeddings_only"))


def datamodule(tmp_path):
    from bertgen.data import make_datamodule
    from bertgen.tokenization import load_tokenizer

    tok = load_tokenizer(MINILM)
    return make_datamodule(
        {**config("task=wikisplit")["task"]}, tok, tok, data_dir=wiki_dir(tmp_path / "data"), batch_size=4
    )


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            ["model.encoder_layers=[0,6]"],
            "^model.encoder_layers=\\[0, 6\\]: layer 6 is out of range; the checkpoint has 6",
        ),
        (["model.encoder_layers=7"], "^model.encoder_layers=7: the checkpoint has 6 layers; take 1 to 6$"),
    ],
)
def test_a_layer_the_checkpoint_lacks_is_one_config_error_from_build_module(tmp_path, overrides, message):
    from bertgen.training import build_module

    c = config("model=bert2rnd", f"model.checkpoint={MINILM}", "task=wikisplit", *overrides)
    validate_config(c)
    with pytest.raises(ConfigError, match=message):
        build_module(c, datamodule(tmp_path))


def test_a_tokenizer_that_is_not_the_checkpoints_needs_new_embeddings(tmp_path):
    from bertgen.tokenization import train_sentencepiece
    from bertgen.training import check_vocabularies

    texts = (SHARED / "data" / "wikisplit" / "validation.tsv").read_text(encoding="utf-8").splitlines()[:200]
    train_sentencepiece(texts, 200, "bpe", num_threads=1, output_dir=tmp_path / "spm")
    c = config("model=bertshare", f"model.checkpoint={MINILM}", f"model.tokenizer={tmp_path / 'spm'}")
    with pytest.raises(ConfigError, match="^model.tokenizer=.* is not the vocabulary of model.encoder=.*init=all_b"):
        check_vocabularies(c["model"])
    check_vocabularies({**c["model"], "init": "all_but_embeddings"})
    shutil.copytree(MINILM, tmp_path / "copy", ignore=shutil.ignore_patterns("*.safetensors"))  # its own: fine
    check_vocabularies({**c["model"], "tokenizer": str(tmp_path / "copy")})


def test_a_bad_combination_on_the_command_line_is_one_line_and_exit_1(tmp_path):
    r = run_cli(
        "train.py", ["model=rnd2rnd", "optim.freeze_warm_started_steps=100", f"hydra.run.dir={tmp_path}"], tmp_path
    )
    assert r.returncode == 1 and "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert lines[-1].startswith("error: optim.freeze_warm_started_steps=100: model rnd2rnd has no warm-started")
    assert not (tmp_path / "checkpoints").exists()


# ---- Adafactor ------------------------------------------------------------------------------------------------------
def test_adafactor_trains_a_few_steps(tmp_path):
    c = config("optim=adafactor", "optim.warmup_steps=0")
    validate_config(c)
    before = module(c["optim"]).state_dict()
    after = lightning_fit(tmp_path, 3, optim=c["optim"])
    assert type(lightning_fit.optimizer) is torch.optim.Adafactor and math.isfinite(lightning_fit.loss)
    for k in ("model.encoder.layers.0.mlp.fc.weight", "model.decoder.layers.0.cross.q.weight"):
        assert not torch.equal(before[k], after[k]), k


# ---- freezing: train.py, resumed inside the freeze ------------------------------------------------------------------
def wiki_dir(root: Path, rows: int = 16) -> Path:
    real = (SHARED / "data" / "wikisplit" / "validation.tsv").read_text(encoding="utf-8").splitlines()
    root.mkdir(parents=True, exist_ok=True)
    for i, split in enumerate(("train", "validation", "test")):
        (root / f"{split}.tsv").write_text("\n".join(real[i * rows : (i + 1) * rows]) + "\n", encoding="utf-8")
    return root


def freeze_run(run_dir: Path, data: Path, steps: int, *extra: str) -> None:
    """train.py in-process: bert2rnd from all-MiniLM-L6-v2's first 2 layers, a 1-layer decoder, batch 4."""
    from train import train

    overrides = [
        "model=bert2rnd",
        f"model.checkpoint={MINILM}",
        "model.encoder_layers=2",
        *(f"model.decoder.{k}={v}" for k, v in TINY_DECODER.items() if k not in ("family", "vocab_size")),
        "task=wikisplit",
        f"data_dir={data}",
        "+task.task_options.max_source_length=48",
        "+task.task_options.max_target_length=48",
        "trainer.enable_progress_bar=false",
        "batch_size=4",
        "global_batch_size=4",
        "task.val_check_interval=100",
        "task.val_max_examples=2",
        "task.val_generation.max_new_tokens=2",
        "callbacks.checkpoint.every_n_train_steps=1",
        "deterministic=true",
        "export_model=false",
        "optim=adamw",  # weight decay on: it must not move frozen weights either
        "optim.schedule=constant",  # the same lr whatever trainer.max_steps a resumed run gives
        "optim.warmup_steps=0",
        "optim.lr=1e-3",
        "optim.freeze_warm_started_steps=3",
        f"trainer.max_steps={steps}",
        f"cache_dir={run_dir.parent / 'cache'}",
        f"hydra.run.dir={run_dir}",
        *extra,
    ]
    cfg = compose("train", overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(run_dir)
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    train(cfg)


def last(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)


FREEZE = {"name": "adamw", "lr": 1e-3, "schedule": "constant", "warmup_steps": 0, "weight_decay": 0.01} | {
    "freeze_warm_started_steps": 3
}


def module(optim: dict):
    from bertgen.lit_module import Seq2SeqModule

    torch.manual_seed(0)
    return Seq2SeqModule(
        model={
            "kind": "encoder_decoder",
            "encoder": str(MINILM),
            "decoder": dict(TINY_DECODER),
            "encoder_layers": 1,
            "overrides": {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0},
        },
        optim=optim,
        special_tokens={"decoder_start_token_id": 101, "pad_token_id": 0, "eos_token_id": 102},
    )


def lightning_fit(
    tmp_path: Path, steps: int, resume: Path | None = None, optim: dict = FREEZE
) -> dict[str, torch.Tensor]:
    """Seq2SeqModule (bert2rnd from all-MiniLM-L6-v2's first layer; by default AdamW with weight decay, 3 steps
    frozen) fitted by a bare Trainer on one repeated batch, saved to ``tmp_path/step<steps>.ckpt``; its weights."""
    import lightning as L

    lit = module(optim)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 3000, (2, 6), generator=g)
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.flip(1)}
    loader = torch.utils.data.DataLoader([batch] * 8, batch_size=None)
    trainer = L.Trainer(
        max_steps=steps,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        deterministic=True,
    )
    trainer.fit(lit, train_dataloaders=loader, ckpt_path=resume)
    trainer.save_checkpoint(tmp_path / f"step{steps}.ckpt")
    lightning_fit.parameters = len(list(lit.parameters()))
    lightning_fit.loss = float(trainer.callback_metrics["train/loss"])
    lightning_fit.optimizer = trainer.optimizers[0]
    return {k: v.clone() for k, v in lit.state_dict().items()}


def test_a_freeze_keeps_warm_started_weights_until_step_n_and_a_resume_inside_it_changes_nothing(tmp_path):
    minilm = read_weights(MINILM)
    warm = {  # ours -> the checkpoint's tensor
        "model.encoder.layers.0.mlp.fc.weight": minilm["encoder.layer.0.intermediate.dense.weight"],
        "model.encoder.layers.0.attn_norm.bias": minilm["encoder.layer.0.attention.output.LayerNorm.bias"],
        "model.decoder.embed.word.weight": minilm["embeddings.word_embeddings.weight"],  # the shared matrix
    }
    at2 = lightning_fit(tmp_path, 2)
    at3 = lightning_fit(tmp_path, 3, resume=tmp_path / "step2.ckpt")
    at5 = lightning_fit(tmp_path, 5, resume=tmp_path / "step3.ckpt")
    for k, v in warm.items():
        assert torch.equal(at2[k], v) and torch.equal(at3[k], v), k  # bit-identical through step N = 3
        assert not torch.equal(at5[k], v), k  # and trained after it
    new = "model.decoder.layers.0.cross.q.weight"
    assert not torch.equal(at2[new], at3[new])  # the new weights train all along
    state = torch.load(tmp_path / "step2.ckpt", map_location="cpu", weights_only=True)
    frozen = state["hyper_parameters"]["warm_started"]  # what is frozen travels with the checkpoint
    assert len(frozen) == 17  # embeddings (5) and one layer (12)
    moments = state["optimizer_states"][0]["state"]
    assert len(moments) == lightning_fit.parameters - len(frozen)  # none for a frozen parameter
    straight = lightning_fit(tmp_path / "straight", 5)
    for k, v in straight.items():
        assert torch.equal(v, at5[k]), k


@pytest.mark.slow
def test_frozen_warm_started_weights_stay_bit_identical_until_step_n_also_across_a_resume(tmp_path):
    data = wiki_dir(tmp_path / "data")
    minilm = read_weights(MINILM)
    warm = {  # ours -> the checkpoint's tensor
        "model.encoder.layers.1.mlp.fc.weight": minilm["encoder.layer.1.intermediate.dense.weight"],
        "model.encoder.layers.0.attn_norm.bias": minilm["encoder.layer.0.attention.output.LayerNorm.bias"],
        "model.encoder.embed.word.weight": minilm["embeddings.word_embeddings.weight"],  # shared with the decoder
    }
    new = "model.decoder.layers.0.cross.q.weight"
    freeze_run(tmp_path / "cut", data, 2)  # stopped inside the freeze ...
    at2 = last(tmp_path / "cut")
    assert at2["global_step"] == 2
    for k, v in warm.items():
        assert torch.equal(at2["state_dict"][k], v), k
    params = at2["optimizer_states"][0]["state"]
    assert len(params) < len(at2["state_dict"]) // 2  # no Adam moments for frozen parameters
    freeze_run(tmp_path / "cut", data, 3, "ckpt_path=last")  # ... resumed to the last frozen step ...
    at3 = last(tmp_path / "cut")
    for k, v in warm.items():
        assert torch.equal(at3["state_dict"][k], v), k
    assert not torch.equal(at3["state_dict"][new], at2["state_dict"][new])  # the new weights train meanwhile
    freeze_run(tmp_path / "cut", data, 5, "ckpt_path=last")  # ... and on past it
    at5 = last(tmp_path / "cut")
    for k, v in warm.items():
        assert not torch.equal(at5["state_dict"][k], v), k
    freeze_run(tmp_path / "straight", data, 5)  # never stopped: the same weights, bit for bit
    straight = last(tmp_path / "straight")
    assert straight["global_step"] == at5["global_step"] == 5
    for k, v in straight["state_dict"].items():
        assert torch.equal(v, at5["state_dict"][k]), k

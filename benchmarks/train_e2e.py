"""End-to-end training: bertgen's `train.py` vs transformers' `Seq2SeqTrainer` on the same real data, in one run.

Both sides train the same warm-started bert2bert, encoder and decoder from all-MiniLM-L6-v2 (6 layers, hidden 384)
with one shared word-embedding matrix (bertgen's bert2bert default; on the transformers side the decoder's input
embedding and LM head are pointed at the encoder's matrix), on the same WikiSplit rows with the same token ids,
for the same number of steps with the same batch (no accumulation), AdamW (lr, betas, eps, weight decay of
`conf/optim/adamw.yaml` as `experiment=mini_wikisplit` sets them), linear warm-up and decay, gradient clipping at
1.0, precision and threads. Everything is read from one composed `train.py` config (`experiment=mini_wikisplit
model=bert2bert`), so the two sides cannot drift apart.

- bertgen: `python train.py experiment=mini_wikisplit model=bert2bert ...` itself, run in a child process (Hydra,
  Lightning, the WikiSplit DataModule with its length-bucketed sampler, the loss over labelled positions only,
  checkpoints and the final validation). The only addition is one observing Lightning callback (timing, tokens and
  memory), appended to the run's callbacks.
- transformers: the way its users run it: `EncoderDecoderModel.from_encoder_decoder_pretrained`,
  `Seq2SeqTrainingArguments(group_by_length=True, ...)`, `DataCollatorForSeq2Seq(tokenizer, model=model)`,
  `Seq2SeqTrainer.train()`, on a `datasets.Dataset` holding the token ids of bertgen's tokenisation cache (what a
  user's `dataset.map(tokenize)` gives; identical ids on both sides, and tokenisation stays out of both timings).

Per side: wall and CPU seconds of the training loop (train start to the end of the last step; model loading,
tokenisation and the final validation excluded), non-pad tokens (source + labelled target) per second, padding
efficiency, peak memory and the final validation loss (token-weighted mean cross-entropy over the same validation
rows, eval mode: bertgen's `val/loss`, the same formula on the transformers model). Peak memory, two ways
(`train_step.PeakMemory`, `train_step.TensorPeak`): the kernel's own high-water mark of the process (`VmHWM`, reset
before every step) above the RSS at train start after `gc` and `malloc_trim`, one exact value per step, the
largest reported with the median (it includes the AdamW state created by the first step, and glibc's caching); and
the most tensor bytes alive at once during the second step, from the allocator events of `torch.profiler` (exact
and repeatable). The last line is ``ratio bertgen/transformers: <x>x``, the wall-clock throughput ratio (non-pad
tokens/s).

    python benchmarks/train_e2e.py            # 9,000 training rows, 1,000 validation rows, 200 steps of 16
    python benchmarks/train_e2e.py --quick    # 2,000 / 200 rows, 12 steps: under 3 minutes on 2 cores
    python benchmarks/train_e2e.py --quick --precision 32-true --profile 3    # fp32, torch.profiler tables

The bertgen run dir (its exported model in ``model/``, which benchmarks/generate_trained.py --ckpt takes) and the
logs of both sides stay under ``--out``.

Needs the shared folder ($BERTGEN_SHARED, else ../shared beside the repository: data/wikisplit and
models/all-MiniLM-L6-v2) and transformers with accelerate (`pip install "transformers[torch]>=4.47.1,<5"`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("BERTGEN_SHARED", REPO.parent / "shared"))
MINILM = SHARED / "models" / "all-MiniLM-L6-v2"
PRESETS = {
    "full": {"train": ["tune.tsv", "validation.tsv[:4000]"], "validation": ["validation.tsv[4000:]"], "steps": 200},
    "quick": {"train": ["tune.tsv[:2000]"], "validation": ["validation.tsv[4000:4200]"], "steps": 12},
}


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_info() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs"


# ---- the parent: one composed config, the data, two children ---------------------------------------------------------
def compose(overrides: list[str]) -> dict:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = hydra_compose(config_name="train", overrides=overrides)
    keys = ("task", "model", "optim", "trainer", "seed", "batch_size", "num_threads")  # not logger: ${hydra:...}
    return {k: OmegaConf.to_container(cfg[k], resolve=True) if OmegaConf.is_config(cfg[k]) else cfg[k] for k in keys}


def prepare(args, out: Path) -> dict:
    """Compose the config, write the splits, tokenise them once (bertgen's cache, shared with its child) and dump
    the ids for the transformers child."""
    from bertgen import training
    from bertgen.data import make_datamodule, task_data_dir

    preset = PRESETS["quick" if args.quick else "full"]
    steps = args.steps or preset["steps"]
    overrides = [
        "experiment=mini_wikisplit",
        "model=bert2bert",
        "model.cross_attention_init=random",  # transformers' (and the paper's) initialisation, on both sides
        f"shared_dir={SHARED}",
        f"task.compose_splits.splits.train=[{','.join(repr(s) for s in preset['train'])}]",
        f"task.compose_splits.splits.validation=[{','.join(repr(s) for s in preset['validation'])}]",
        "task.compose_splits.splits.test=['test.tsv[:64]']",
        f"trainer.max_steps={steps}",
        f"task.val_check_interval={steps}",  # one validation, after the last step
        "task.val_max_examples=32",  # the greedy generation of that validation (not timed): keep it short
        f"global_batch_size={args.batch_size}",
        f"batch_size={args.batch_size}",
        f"optim.warmup_steps={max(1, steps // 10)}",
        f"num_threads={args.threads}",
        "trainer.enable_progress_bar=false",
        "seed=0",
    ]
    if args.dropout is not None:  # the experiment's own value otherwise
        for k in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            overrides.append(f"++model.overrides.{k}={args.dropout}")
    if args.precision is not None:
        overrides.append(f"trainer.precision={args.precision}")
    if args.lr is not None:
        overrides.append(f"optim.lr={args.lr}")
    overrides += args.override
    c = compose(overrides)
    data_dir = task_data_dir(c["task"], None, out, c["seed"])
    cache_dir = out / "cache"
    src_tok, tgt_tok = training.load_tokenizers(c["model"], c["task"], out, data_dir)
    dm = make_datamodule(c["task"], src_tok, tgt_tok, data_dir=data_dir, cache_dir=cache_dir, batch_size=16)
    dm.prepare_data()
    dm.setup("fit")
    ids = {}
    for split in ("train", "validation"):
        ds = dm.datasets[split]
        rows = [ds[k] for k in range(len(ds))]
        ids[split] = {"source": [r[1].tolist() for r in rows], "target": [r[2].tolist() for r in rows]}
    (out / "ids.json").write_text(json.dumps(ids))
    special = dm.special_tokens.model_ids()
    o, t = c["optim"], c["trainer"]
    return {
        "overrides": overrides + [f"data_dir={data_dir}", f"cache_dir={cache_dir}", f"hydra.run.dir={out / 'run'}"],
        "ids": str(out / "ids.json"),
        "encoder": c["model"]["encoder"],
        "decoder": c["model"]["decoder"],
        "tokenizer": c["model"]["tokenizer"],
        "model_overrides": dict(c["model"].get("overrides") or {}),
        "special": special,
        "steps": steps,
        "batch_size": c["batch_size"],
        "lr": o["lr"],
        "warmup_steps": o["warmup_steps"],
        "weight_decay": o["weight_decay"],
        "betas": o["betas"],
        "eps": o["eps"],
        "max_grad_norm": t["gradient_clip_val"],
        "bf16": "bf16" in str(t["precision"]),
        "threads": c["num_threads"],
        "seed": c["seed"],
        "rows": {k: len(v["source"]) for k, v in ids.items()},
        "out": str(out),
        "profile": args.profile,
    }


def run_child(which: str, spec_path: Path) -> dict:
    result = spec_path.parent / f"{which}.json"
    result.unlink(missing_ok=True)
    log = spec_path.parent / f"{which}.log"
    before = load_info()
    with open(log, "w") as f:
        proc = subprocess.run(
            [sys.executable, __file__, "--child", which, "--spec", str(spec_path)], stdout=f, stderr=subprocess.STDOUT
        )
    if proc.returncode != 0 or not result.is_file():
        tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-30:])
        raise SystemExit(f"the {which} run failed (exit {proc.returncode}); last lines of {log}:\n{tail}")
    r = json.loads(result.read_text())
    r["load_before"], r["load_after"] = before, load_info()
    return r


# ---- what both children record -------------------------------------------------------------------------------------
class Recorder:
    """Time, CPU time, tokens and per-step peak memory of a training loop (framework-neutral)."""

    def __init__(self, profile: int = 0) -> None:
        from train_step import PeakMemory

        self.mem = PeakMemory()
        self.profile, self.prof, self.profile_table = profile, None, ""  # profile steps 3 .. 3 + profile
        self.t0 = self.c0 = self.t1 = self.c1 = 0.0
        self.steps = self.examples = self.tokens = self.padded = 0
        self.step_times: list[float] = []
        self._t_begin = 0.0
        self.tensor, self.tensor_peak = None, 0

    def start(self) -> None:
        self.mem.start()
        self.t0, self.c0 = time.perf_counter(), time.process_time()

    def begin(self) -> None:
        if self.steps == 1:  # the second step (the optimizer state exists): tensor peak, from the allocator's events
            from train_step import TensorPeak

            self.tensor = TensorPeak()
            self.tensor.start()
        if self.profile and self.steps == 3:
            import torch

            self.prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
            self.prof.start()
        self.mem.begin()
        self._t_begin = time.perf_counter()

    def end(self) -> None:
        self.mem.end()
        self.t1, self.c1 = time.perf_counter(), time.process_time()
        self.step_times.append(self.t1 - self._t_begin)
        self.steps += 1
        if self.steps == 2:
            self.tensor_peak = self.tensor.stop()
        if self.prof is not None and self.steps == 3 + self.profile:
            self.prof.stop()
            table = self.prof.key_averages().table(
                sort_by="self_cpu_time_total", row_limit=25, max_name_column_width=50
            )
            self.profile_table = f"torch.profiler, steps 4-{3 + self.profile}:\n{table}"
            self.prof = None

    def count(self, attention_mask, labels, input_ids) -> None:
        self.examples += int(input_ids.shape[0])
        self.tokens += int(attention_mask.sum()) + int((labels != -100).sum())
        self.padded += int(input_ids.numel()) + int(labels.numel())

    def result(self, which: str, val_loss: float, params: int) -> dict:
        import torch

        wall, cpu = self.t1 - self.t0, self.c1 - self.c0
        return {
            "which": which,
            "wall_s": wall,
            "cpu_s": cpu,
            "steps": self.steps,
            "examples": self.examples,
            "tokens": self.tokens,
            "tokens_per_s": self.tokens / wall,
            "tokens_per_cpu_s": self.tokens / cpu,
            "padding_efficiency": self.tokens / max(1, self.padded),
            "median_step_s": statistics.median(self.step_times),
            "memory": {**self.mem.summary(), "tensor_peak_mb": self.tensor_peak / 2**20},
            "val_loss": val_loss,
            "params": params,
            "threads": torch.get_num_threads(),
            "profile": self.profile_table,
        }


def child_bertgen(spec: dict) -> dict:
    """`train.py` with its own config and code; one observing callback appended to the run's callbacks."""
    import runpy

    import lightning as L

    import bertgen.callbacks

    rec, state = Recorder(spec["profile"]), {"val_loss": None, "params": 0}

    class Observe(L.Callback):
        def on_train_start(self, trainer, pl_module):
            state["params"] = sum(p.numel() for p in pl_module.model.parameters())
            rec.start()

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            rec.count(batch["attention_mask"], batch["labels"], batch["input_ids"])
            rec.begin()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            rec.end()

        def on_validation_end(self, trainer, pl_module):
            if not trainer.sanity_checking and "val/loss" in trainer.callback_metrics:
                state["val_loss"] = float(trainer.callback_metrics["val/loss"])

    build = bertgen.callbacks.build_callbacks

    def with_observer(*a, **k):
        callbacks, best = build(*a, **k)
        return [*callbacks, Observe()], best

    bertgen.callbacks.build_callbacks = with_observer  # train.py imports it from the module at call time
    sys.argv = [str(REPO / "train.py"), *spec["overrides"]]
    runpy.run_path(str(REPO / "train.py"), run_name="__main__")  # as `python train.py ...` (Hydra finds conf/)
    return rec.result("bertgen", state["val_loss"], state["params"])


def child_transformers(spec: dict) -> dict:
    """Seq2SeqTrainer as its documentation runs it, on the same ids, model, optimiser and schedule."""
    import torch

    torch.set_num_threads(spec["threads"])
    import datasets
    import transformers as tf

    try:
        import accelerate  # noqa: F401  (the Trainer needs it)
    except ImportError:
        raise SystemExit('the transformers Trainer needs accelerate: pip install "transformers[torch]"') from None
    tf.set_seed(spec["seed"])
    ids = json.loads(Path(spec["ids"]).read_text())
    s = spec["special"]
    # the model config's overrides (dropout, shapes) on both sides, as bertgen applies them
    sides = {f"{side}_{k}": v for side in ("encoder", "decoder") for k, v in spec["model_overrides"].items()}
    model = tf.EncoderDecoderModel.from_encoder_decoder_pretrained(spec["encoder"], spec["decoder"], **sides)
    for side in (model.encoder.config, model.decoder.config):
        assert all(getattr(side, k) == v for k, v in spec["model_overrides"].items()), "overrides not applied"
    model.config.decoder_start_token_id = s["decoder_start_token_id"]
    model.config.pad_token_id, model.config.eos_token_id = s["pad_token_id"], s["eos_token_id"]
    # one word-embedding matrix for the encoder, the decoder input and the LM head, as bertgen's bert2bert has
    shared = model.encoder.get_input_embeddings()
    model.decoder.set_input_embeddings(shared)
    model.decoder.get_output_embeddings().weight = shared.weight
    assert model.decoder.get_output_embeddings().weight is model.encoder.get_input_embeddings().weight
    tok = tf.AutoTokenizer.from_pretrained(spec["tokenizer"])

    def dataset(split):
        src, tgt = ids[split]["source"], ids[split]["target"]
        return datasets.Dataset.from_dict(
            {"input_ids": src, "attention_mask": [[1] * len(x) for x in src], "labels": tgt}
        )

    train_ds, val_ds = dataset("train"), dataset("validation")
    collator = tf.DataCollatorForSeq2Seq(tok, model=model)
    targs = tf.Seq2SeqTrainingArguments(
        output_dir=str(Path(spec["out"]) / "hf_run"),
        per_device_train_batch_size=spec["batch_size"],
        gradient_accumulation_steps=1,
        max_steps=spec["steps"],
        learning_rate=spec["lr"],
        weight_decay=spec["weight_decay"],
        adam_beta1=spec["betas"][0],
        adam_beta2=spec["betas"][1],
        adam_epsilon=spec["eps"],
        warmup_steps=spec["warmup_steps"],
        lr_scheduler_type="linear",
        max_grad_norm=spec["max_grad_norm"],
        group_by_length=True,
        bf16=spec["bf16"],
        use_cpu=True,
        seed=spec["seed"],
        logging_steps=10,
        save_strategy="no",
        eval_strategy="no",
        report_to=[],
        disable_tqdm=True,
        dataloader_pin_memory=False,
    )
    rec = Recorder(spec["profile"])

    def count(module, args, kwargs):
        if module.training:
            rec.count(kwargs["attention_mask"], kwargs["labels"], kwargs["input_ids"])

    model.register_forward_pre_hook(count, with_kwargs=True)

    class Observe(tf.TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            rec.start()

        def on_step_begin(self, args, state, control, **kw):
            rec.begin()

        def on_step_end(self, args, state, control, **kw):
            rec.end()

    trainer = tf.Seq2SeqTrainer(
        model=model, args=targs, train_dataset=train_ds, data_collator=collator, callbacks=[Observe()]
    )
    trainer.train()
    val_loss = token_weighted_loss(model, val_ds, collator, bf16=spec["bf16"])
    params = sum(p.numel() for p in model.parameters())  # shared parameters once
    return rec.result("transformers", val_loss, params)


def token_weighted_loss(model, ds, collator, bf16: bool, batch_size: int = 32) -> float:
    """Mean cross-entropy over every labelled validation token (eval mode), bertgen's ``val/loss`` formula."""
    import torch
    import torch.nn.functional as F

    model.eval()
    total, n = 0.0, 0
    rows = sorted(range(len(ds)), key=lambda i: len(ds[i]["input_ids"]))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for i in range(0, len(rows), batch_size):
            batch = collator([ds[j] for j in rows[i : i + batch_size]])
            logits = model(**batch).logits.float()
            labels = batch["labels"]
            total += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), reduction="sum"))
            n += int((labels != -100).sum())
    return total / n


# ---- report -------------------------------------------------------------------------------------------------------
def report(spec: dict, res: dict) -> None:
    ref, ours = res["transformers"], res["bertgen"]
    print(
        f"\nbert2bert all-MiniLM-L6-v2 (shared embeddings), WikiSplit {spec['rows']['train']} training / "
        f"{spec['rows']['validation']} validation rows, {spec['steps']} steps of {spec['batch_size']}, AdamW lr "
        f"{spec['lr']} (warm-up {spec['warmup_steps']}, linear decay, weight decay {spec['weight_decay']}), clip "
        f"{spec['max_grad_norm']}, {'bf16 autocast' if spec['bf16'] else 'fp32'}, {spec['threads']} threads, "
        f"model overrides {spec['model_overrides']}"
    )
    print(f"machine: {cpu_name()}, {os.cpu_count()} CPUs; python {sys.version.split()[0]}")
    head = (
        f"{'':>13} {'wall s':>8} {'CPU s':>8} {'examples':>8} {'tokens':>8} {'tok/s':>8} {'tok/CPU s':>9} "
        f"{'pad eff':>7} {'s/step':>7} {'peak +MiB':>9} {'median':>7} {'process':>8} {'tensors':>8} {'val loss':>8}"
    )
    print(head)
    for r in (ref, ours):
        m = r["memory"]
        print(
            f"{r['which']:>13} {r['wall_s']:8.1f} {r['cpu_s']:8.1f} {r['examples']:8d} {r['tokens']:8d} "
            f"{r['tokens_per_s']:8.1f} {r['tokens_per_cpu_s']:9.1f} {r['padding_efficiency']:7.3f} "
            f"{r['median_step_s']:7.3f} {m['peak_mb']:9.1f} {m['median_mb']:7.1f} {m['process_peak_mb']:8.0f} "
            f"{m['tensor_peak_mb']:8.1f} "
            f"{r['val_loss']:8.4f}"
        )
    for r in (ref, ours):
        print(
            f"  {r['which']}: {r['params'] / 1e6:.1f}M parameters; {r['load_before']} before, {r['load_after']} after"
        )
    print(
        f"memory bertgen/transformers: {ours['memory']['peak_mb'] / max(ref['memory']['peak_mb'], 1e-9):.2f} "
        f"(peak above train start; exact={ours['memory']['exact'] and ref['memory']['exact']}), "
        f"{ours['memory']['process_peak_mb'] / ref['memory']['process_peak_mb']:.2f} (process peak), "
        f"{ours['memory']['tensor_peak_mb'] / max(ref['memory']['tensor_peak_mb'], 1e-9):.2f} (tensor peak of step 2)"
    )
    print(f"validation loss bertgen - transformers: {ours['val_loss'] - ref['val_loss']:+.4f}")
    print(f"CPU-time throughput ratio bertgen/transformers: {ours['tokens_per_cpu_s'] / ref['tokens_per_cpu_s']:.2f}x")
    for r in (ref, ours):
        if r.get("profile"):
            print(f"\n{r['which']}: {r['profile']}")
    print(f"ratio bertgen/transformers: {ours['tokens_per_s'] / ref['tokens_per_s']:.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2,000 training rows, 200 validation rows, 12 steps")
    ap.add_argument("--steps", type=int, default=None, help="training steps (default 200, quick 12)")
    ap.add_argument("--batch-size", type=int, default=16, help="examples per step (the effective batch)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of each side (1: see RESULTS.md)")
    ap.add_argument(
        "--precision", default=None, choices=["32-true", "bf16-mixed"], help="both sides (default: the experiment's)"
    )
    ap.add_argument(
        "--dropout", type=float, default=None, help="hidden and attention dropout (default: the experiment's)"
    )
    ap.add_argument("--lr", type=float, default=None, help="peak learning rate (default: the experiment's)")
    ap.add_argument("--out", default=str(Path(tempfile.gettempdir()) / "bertgen_train_e2e"), help="run folders, logs")
    ap.add_argument("--order", default="transformers,bertgen", help="which side runs first")
    ap.add_argument("--override", action="append", default=[], help="one more train.py override (both sides)")
    ap.add_argument("--profile", type=int, default=0, help="profile this many steps (from the 4th) of each side")
    ap.add_argument("--child", choices=["bertgen", "transformers"], help=argparse.SUPPRESS)
    ap.add_argument("--spec", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        spec = json.loads(Path(args.spec).read_text())
        r = (child_bertgen if args.child == "bertgen" else child_transformers)(spec)
        (Path(args.spec).parent / f"{args.child}.json").write_text(json.dumps(r))
        return
    if not (SHARED / "data" / "wikisplit").is_dir() or not MINILM.is_dir():
        raise SystemExit(f"shared folder not found at {SHARED} (set BERTGEN_SHARED)")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ["BERTGEN_SHARED"] = str(SHARED)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"{load_info()} at start", flush=True)
    spec = prepare(args, out)
    spec_path = out / "spec.json"
    spec_path.write_text(json.dumps(spec, indent=1))
    res = {}
    for which in args.order.split(","):
        t = time.perf_counter()
        res[which] = run_child(which, spec_path)
        print(f"  {which}: done in {time.perf_counter() - t:.0f} s ({res[which]['load_after']})", flush=True)
    print(f"bertgen run dir (exported model in model/): {out / 'run'}")
    report(spec, res)


if __name__ == "__main__":
    main()

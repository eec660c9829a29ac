"""Training-step throughput and memory: bertgen's EncoderDecoder vs transformers' EncoderDecoderModel.

Same weights (one random bert2bert saved once, loaded by both), same batch (B=8, source <=128, target <=64 tokens,
right-padded), forward + backward + fused AdamW step, train mode (dropout on). Each framework runs in its own
subprocess so the memory of one does not hide in the other's. Prints steps/s, tokens/s, the ratio bertgen/reference
and two memory figures per framework (`PeakMemory`, `tensor_peak_bytes`):

- peak RSS: the kernel's own high-water mark of the process (``VmHWM``, reset before every timed step through
  ``/proc/self/clear_refs``), minus the resident size before the timed steps after ``gc`` and glibc's
  ``malloc_trim(0)``; one exact value per step, no sampling thread. The largest over all steps is reported.
- tensor peak: the most bytes of tensors alive at once during one more step, from the allocator events that
  ``torch.profiler(profile_memory=True)`` records (allocations minus frees, in time order); independent of
  glibc, of the load on the machine and of timing.

    python benchmarks/train_step.py --size base     # BERT-base bert2bert (the issue's figure; minutes on 2 cores)
    python benchmarks/train_step.py --size small    # 4x256 for a quick check

Until 2026-12 the peak was the highest RSS sampled every 2 ms by a Python thread, minus an untrimmed RSS: that
figure depends on what glibc kept from the warm-up steps and on whether the thread ran during the peaks, and moved
from 0.58x to 1.05x between two runs (benchmarks/RESULTS.md, "Memory measure"). ``--legacy-memory`` prints it too.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

SIZES = {
    "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
    "small": dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024),
}
MiB = 2**20


# ---- memory measures (also used by benchmarks/train_e2e.py) ---------------------------------------------------------
def rss_bytes() -> int:
    """Resident set size of this process now."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def hwm_bytes() -> int | None:
    """The kernel's peak resident set size of this process (``VmHWM``) since start or the last `reset_hwm`."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def reset_hwm() -> bool:
    """Reset ``VmHWM`` to the current RSS (Linux >= 4.0, ``/proc/self/clear_refs`` value 5); False where it cannot."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def trim_allocator() -> None:
    """Collect garbage and return glibc's free heap pages to the system, so that the base RSS holds live data only."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


class PeakMemory:
    """Peak resident memory of marked intervals (training steps) above a trimmed base, one exact sample each.

    ``start()`` trims the allocator and takes the base RSS; ``begin()`` / ``end()`` bracket an interval: the kernel's
    high-water mark is reset at ``begin`` and read at ``end``, so every interval gives the true peak of the process
    during it (no sampling thread, nothing missed under load). Where ``clear_refs`` is not available (not Linux, no
    permission) a thread samples the RSS every millisecond instead (``exact`` is then False).
    """

    def __init__(self) -> None:
        self.base = 0
        self.samples: list[int] = []  # bytes above base, one per interval
        self.process_peak = 0  # absolute peak RSS seen over the intervals and before start (bytes)
        self.exact = reset_hwm()
        self._stop: threading.Event | None = None
        self._sampled = 0

    def start(self) -> None:
        self.process_peak = max(self.process_peak, hwm_bytes() or 0)
        trim_allocator()
        self.base = rss_bytes()

    def begin(self) -> None:
        if self.exact:
            reset_hwm()
            return
        self._sampled, self._stop = rss_bytes(), threading.Event()
        threading.Thread(target=self._sample, args=(self._stop,), daemon=True).start()

    def _sample(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self._sampled = max(self._sampled, rss_bytes())
            time.sleep(0.001)

    def end(self) -> None:
        if self.exact:
            peak = hwm_bytes() or rss_bytes()
        else:
            self._stop.set()
            peak = max(self._sampled, rss_bytes())
        self.process_peak = max(self.process_peak, peak)
        self.samples.append(peak - self.base)

    def summary(self) -> dict:
        s = self.samples or [0]
        return {
            "peak_mb": max(s) / MiB,
            "median_mb": statistics.median(s) / MiB,
            "samples": len(self.samples),
            "process_peak_mb": self.process_peak / MiB,
            "base_mb": self.base / MiB,
            "exact": self.exact,
        }


class TensorPeak:
    """Most bytes of tensors alive at once between ``start()`` and ``stop()``, above those alive at ``start``: the
    allocator's events as ``torch.profiler(profile_memory=True)`` records them (allocations minus frees, in time
    order). Tensor storage only (no allocator caching, no library workspaces), and deterministic."""

    def start(self) -> None:
        from torch.profiler import ProfilerActivity, profile

        self._prof = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
        self._prof.start()

    def stop(self) -> int:
        self._prof.stop()
        events = [e for e in self._prof.profiler.kineto_results.events() if e.name() == "[memory]"]
        live = peak = 0
        for e in sorted(events, key=lambda e: e.start_ns()):
            live += e.nbytes()
            peak = max(peak, live)
        return peak


def tensor_peak_bytes(fn) -> int:
    """`TensorPeak` of one call of ``fn()``."""
    tp = TensorPeak()
    tp.start()
    fn()
    return tp.stop()


# ---- the benchmark --------------------------------------------------------------------------------------------------
def make_checkpoint(size: str, folder: str) -> None:
    import torch
    import transformers as tf

    torch.manual_seed(0)
    # two config objects: from_encoder_decoder_configs turns its decoder argument into a decoder in place
    enc, dec = (tf.BertConfig(vocab_size=30522, **SIZES[size]) for _ in range(2))
    cfg = tf.EncoderDecoderConfig.from_encoder_decoder_configs(enc, dec)
    cfg.decoder_start_token_id, cfg.pad_token_id = 101, 0
    tf.EncoderDecoderModel(config=cfg).save_pretrained(folder)


def make_batch(B=8, S=128, T=64):
    import torch

    g = torch.Generator().manual_seed(1)
    src_len = torch.randint(S // 2, S + 1, (B,), generator=g)
    tgt_len = torch.randint(T // 2, T + 1, (B,), generator=g)
    src = torch.randint(1000, 30000, (B, S), generator=g)
    tgt = torch.randint(1000, 30000, (B, T), generator=g)
    src_mask = (torch.arange(S)[None] < src_len[:, None]).long()
    labels = tgt.masked_fill(torch.arange(T)[None] >= tgt_len[:, None], -100)
    return src.masked_fill(src_mask == 0, 0), src_mask, labels


def run_one(which: str, folder: str, steps: int, warmup: int, threads: int, legacy: bool) -> dict:
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    if which == "bertgen":
        from bertgen.model import EncoderDecoder

        model = EncoderDecoder.from_pretrained(folder)
    else:
        import transformers as tf

        model = tf.EncoderDecoderModel.from_pretrained(folder)
    model.train()
    # fused AdamW for both: bertgen's default, and transformers' Trainer default on torch >= 2.8 (adamw_torch_fused)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)
    src, mask, labels = make_batch()

    # each framework's training call: bertgen's LightningModule asks for the loss alone (return_logits=False: the
    # output projection runs on labelled positions only); transformers always returns the full logits
    kwargs = {"return_logits": False} if which == "bertgen" else {}

    def step():
        loss = model(input_ids=src, attention_mask=mask, labels=labels, **kwargs).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(warmup):
        step()
    out = {}
    if legacy:  # the old measure, kept to show what it gave: sampled RSS over the timed steps minus untrimmed RSS
        base, peak, stop = rss_bytes(), [rss_bytes()], threading.Event()

        def sample():
            while not stop.is_set():
                peak[0] = max(peak[0], rss_bytes())
                time.sleep(0.002)

        t = threading.Thread(target=sample, daemon=True)
        t.start()
        for _ in range(steps):
            step()
        stop.set()
        t.join()
        out["legacy_peak_mb"] = (peak[0] - base) / MiB
    mem = PeakMemory()
    mem.start()
    times = []
    for _ in range(steps):
        mem.begin()
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
        mem.end()
    tensor_peak = tensor_peak_bytes(step)
    tokens = int(mask.sum() + (labels != -100).sum())
    med = statistics.median(times)
    return {
        "which": which,
        "step_s": med,
        "tokens_per_s": tokens / med,
        "rss_samples_mb": [s / MiB for s in mem.samples],
        "process_peak_mb": mem.process_peak / MiB,
        "tensor_peak_mb": tensor_peak / MiB,
        "exact": mem.exact,
        "params": sum(p.numel() for p in model.parameters()),
        **out,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=SIZES, default="small")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--legacy-memory", action="store_true", help="also print the old sampled-RSS figure")
    ap.add_argument("--one", choices=["bertgen", "transformers"], help=argparse.SUPPRESS)
    ap.add_argument("--folder", help=argparse.SUPPRESS)
    args = ap.parse_args()
    steps = args.steps or (5 if args.size == "base" else 20)
    if args.one:
        res = run_one(args.one, args.folder, steps, args.warmup, args.threads, args.legacy_memory)
        print(json.dumps(res))
        return
    with tempfile.TemporaryDirectory() as folder:
        make_checkpoint(args.size, folder)
        runs: dict[str, list[dict]] = {"transformers": [], "bertgen": []}
        for which in ("transformers", "bertgen", "transformers", "bertgen"):  # interleave against drift
            cmd = [sys.executable, __file__, "--one", which, "--folder", folder, "--size", args.size]
            cmd += ["--steps", str(steps), "--warmup", str(args.warmup), "--threads", str(args.threads)]
            cmd += ["--legacy-memory"] if args.legacy_memory else []
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
            runs[which].append(json.loads(out))
    res = {}
    for which, rs in runs.items():
        samples = [s for r in rs for s in r["rss_samples_mb"]]
        res[which] = {
            **min(rs, key=lambda r: r["step_s"]),  # best of the runs for time
            "rss_peak_mb": max(samples),
            "rss_median_mb": statistics.median(samples),
            "n_samples": len(samples),
            "tensor_peak_mb": max(r["tensor_peak_mb"] for r in rs),
            "process_peak_mb": max(r["process_peak_mb"] for r in rs),
            "legacy": [round(r["legacy_peak_mb"]) for r in rs if "legacy_peak_mb" in r],
        }
    ref, ours = res["transformers"], res["bertgen"]
    print(
        f"size={args.size} B=8 S<=128 T<=64 threads={args.threads} steps={steps} "
        f"(best of 2 runs, median step; memory over {ref['n_samples']} steps each)"
    )
    for r in (ref, ours):
        legacy = f"  legacy sampled +{r['legacy']} MiB" if r["legacy"] else ""
        print(
            f"  {r['which']:<13} {r['step_s'] * 1000:8.1f} ms/step  {r['tokens_per_s']:9.1f} tok/s  "
            f"peak RSS +{r['rss_peak_mb']:7.1f} MiB (median +{r['rss_median_mb']:.1f}, "
            f"process {r['process_peak_mb']:.0f})"
            f"  tensor peak {r['tensor_peak_mb']:7.1f} MiB  params {r['params'] / 1e6:.1f}M{legacy}"
        )
    print(
        f"  throughput ratio bertgen/transformers: {ref['step_s'] / ours['step_s']:.2f}x   memory ratio: "
        f"{ours['rss_peak_mb'] / max(ref['rss_peak_mb'], 1e-9):.2f} (peak RSS), "
        f"{ours['tensor_peak_mb'] / max(ref['tensor_peak_mb'], 1e-9):.2f} (tensor peak)"
    )


if __name__ == "__main__":
    main()

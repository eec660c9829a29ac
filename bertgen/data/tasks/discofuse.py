"""DiscoFuse sentence fusion (Geva et al. 2019): reader, official release, metrics and the paper's Table 2.

Checksums: the ``datasets`` legacy loading script ``discofuse``, ``dataset_infos.json`` (entry for the ``.zip``
release in the ``gresearch/discofuse`` Google Cloud Storage bucket, the download the google-research-datasets/discofuse
README links to); the hub copy's row counts from the same file (``balanced=False``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from bertgen.data.readers import iter_tsv, one_line, parquet_by_split, parquet_rows
from bertgen.data.sources import HF_DATASETS_SCRIPTS, DatasetSource, HubRepo, RemoteFile
from bertgen.data.tasks.base import (
    PaperColumn,
    PaperResults,
    Task,
    expect_file,
    paper_rows,
    register,
    variant_rows,
)
from bertgen.errors import ConfigError

log = logging.getLogger("bertgen.data")

COLUMNS = (
    "coherent_first_sentence",
    "coherent_second_sentence",
    "incoherent_first_sentence",
    "incoherent_second_sentence",
    "discourse_type",
    "connective_string",
    "has_coref_type_pronoun",
    "has_coref_type_nominal",
)


def _build_from_parquet(source: DatasetSource, files: dict[str, Path], out: Path) -> dict[str, int]:
    """The hub's parquet files as release-format TSVs (header + the 8 columns)."""
    names = {"train": "train.tsv", "validation": "dev.tsv", "test": "test.tsv"}
    rows = {}
    for split, paths in parquet_by_split(files).items():
        with open(out / names.get(split, f"{split}.tsv"), "w", encoding="utf-8") as f:
            f.write("\t".join(COLUMNS) + "\n")
            n = 0
            for r in parquet_rows(paths, list(COLUMNS)):
                vals = [
                    f"{float(r[c]):.1f}" if c.startswith("has_coref") and r[c] is not None else one_line(r[c])
                    for c in COLUMNS
                ]
                f.write("\t".join(vals) + "\n")
                n += 1
        rows[split] = n
    return rows


OFFICIAL = DatasetSource(
    name="discofuse",
    title="DiscoFuse (Geva et al. 2019), Wikipedia part, balanced subsets (the paper's data)",
    homepage="https://github.com/google-research-datasets/discofuse",
    folder="discofuse",
    builder="zip",
    layout=("train_balanced.tsv", "dev_balanced.tsv", "test_balanced.tsv"),
    files=(
        RemoteFile(
            "discofuse_v1_wikipedia.zip",
            "https://storage.googleapis.com/gresearch/discofuse/discofuse_v1_wikipedia.zip",
            1_717_422_334,
            "e8a5ec52cdd9820ce9b410b47c3a57a49a300470c976202cd7caab613658ebfe",
            f"{HF_DATASETS_SCRIPTS} discofuse, dataset_infos.json (config discofuse-wikipedia)",
        ),
    ),
    # the release unpacks to discofuse_v1/wikipedia/{train,dev,test}{,_balanced}.tsv; only *_balanced are kept
    members={
        "train_balanced.tsv": "wikipedia/train_balanced.tsv",
        "dev_balanced.tsv": "wikipedia/dev_balanced.tsv",
        "test_balanced.tsv": "wikipedia/test_balanced.tsv",
    },
    rows={"train": None, "validation": None, "test": None},
    download_size=1_717_422_334,
    note="balanced split counts are not recorded in the stored sources (paper §4: ~4.5M train); the archive "
    "holds 16,642,323 examples in all (DiscoFuse README), of which only the *_balanced.tsv files are kept.",
    header=True,
)

HUB = DatasetSource(
    name="discofuse_hub",
    title="DiscoFuse on the Hugging Face hub: the FULL, UNBALANCED Wikipedia set (not the paper's data)",
    homepage="https://huggingface.co/datasets/google-research-datasets/discofuse",
    folder="discofuse_hub",
    builder=_build_from_parquet,
    layout=("train.tsv", "dev.tsv", "test.tsv"),
    hub=HubRepo("google-research-datasets/discofuse", "main", ("discofuse-wikipedia/*.parquet",)),
    rows={"train": 16_310_585, "validation": 168_081, "test": 163_657},
    note="only with task_options.source=hub; rows from the discofuse dataset_infos.json (balanced=False).",
    header=True,
)

# Table 2 - DiscoFuse (test). Columns: training-data fraction x metric.
TABLE2 = PaperResults(
    2,
    "DiscoFuse (test)",
    (
        PaperColumn("100% Exact", "exact", 0),
        PaperColumn("100% SARI", "sari", 1, by_fraction="SARI"),
        PaperColumn("10% SARI", "sari", 2, fraction=0.1, optional=True),
        PaperColumn("1% SARI", "sari", 3, fraction=0.01, optional=True),
    ),
    (
        *paper_rows(None, "", ("Geva et al. (2019)", None, 51.1, 84.5, None, None)),
        *paper_rows(
            "base",
            "base (12 layers)",
            ("roberta2gpt", "roberta2gpt", 65.6, 89.9, 87.1, 80.3),
            ("robertaShare", "robertashare", 65.3, 89.7, 86.9, 81.2),  # HF blog prints 86.0 for 10%; paper 86.9
            ("bert2bert", "bert2bert", 63.9, 89.3, 86.1, 81.2),
            ("bert2rnd", "bert2rnd", 63.9, 89.3, 86.1, 80.3),
            ("bertShare", "bertshare", 63.9, 89.2, 86.0, 80.8),
            ("bert2gpt", "bert2gpt", 61.5, 88.4, 84.1, 70.2),
            ("gpt", "gpt", 60.4, 88.0, 82.9, 74.5),
            ("rnd2bert", "rnd2bert", 60.0, 87.6, 82.1, 72.8),
            ("rnd2rnd", "rnd2rnd", 58.3, 86.9, 81.5, 69.3),
            ("rnd2gpt", "rnd2gpt", 57.6, 86.5, 81.4, 70.6),
        ),
        *paper_rows(
            "large",
            "large (24 layers)",
            ("robertaShare", "robertashare", 66.6, 90.3, 87.7, 81.5),
            ("bertShare", "bertshare", 65.3, 89.9, 86.6, 81.4),
        ),
    ),
)

# Table 6 - the embeddings and vocabulary ablation, as rows (model, variant) of one SARI column. The variants are the
# config `variant` of the ablation runs (conf/experiment/table6_ablation.yaml); the full-init row is the plain run.
_SARI = (PaperColumn("SARI", "sari", 0),)
TABLE6 = PaperResults(
    6,
    "Ablation: embeddings and vocabulary (DiscoFuse SARI)",
    _SARI,
    tuple(
        row
        for model, label, values in (
            ("bertshare", "bertShare", (89.3, 87.5, 87.5, 88.0)),
            ("gpt", "gpt", (88.0, 77.0, 84.2, 69.7)),
        )
        for row in variant_rows(
            "base",
            label,
            (f"{label}: full init", model, "full", values[0]),
            (f"{label}: − embeddings from checkpoint", model, "no_ckpt_embeddings", values[1]),
            (f"{label}: + task specific SentencePieces (16k)", model, "task_spm", values[2]),
            (f"{label}: + pre-training SentencePieces (frozen, then full)", model, "task_spm_frozen", values[3]),
        )
    ),
    notes=("The paper prints bertShare full init as 89.3 here and 89.2 in Table 2.",),
)

# §5's other ablations (no table in the paper): each block with the paper's reference row beside it. Runs at other
# training fractions (§5: embeddings only on 10% of the data) get a column each.
SEC5 = PaperResults(
    8,
    "Other ablations (DiscoFuse SARI)",
    (PaperColumn("SARI", "sari", 0, by_fraction="SARI"),),
    (
        *variant_rows(
            "base",
            "GPT-2 tuning (learning rate, warmup, Adafactor)",
            ("bert2gpt tuned", "bert2gpt", "adafactor", 88.8),
            ("gpt tuned", "gpt", "adafactor", 88.1),
            ("rnd2gpt tuned", "rnd2gpt", "adafactor", 87.7),
            ("bert2gpt (Table 2)", "bert2gpt", None, 88.4),
            ("gpt (Table 2)", "gpt", None, 88.0),
            ("rnd2gpt (Table 2)", "rnd2gpt", None, 86.5),
        ),
        *variant_rows(
            "base",
            "embeddings only (the rest random)",
            ("BERT embeddings", ("bert2bert", "bertshare", "bert2rnd", "rnd2bert"), "embeddings_only", 87.1),
            (
                "GPT-2 embeddings",
                ("gpt", "rnd2gpt", "bert2gpt", "roberta2gpt", "robertashare"),
                "embeddings_only",
                87.0,
            ),
            ("rnd2rnd", "rnd2rnd", None, 86.9),
        ),
        *variant_rows(
            "base",
            "subset of layers (bertShare, 10 layers of the 24-layer BERT)",
            ("first 10 layers", "bertshare", "layers_first10", 88.2),
            ("CMA-ES layers 9, 10, 13-18, 23, 24", "bertshare", "layers_cmaes", 89.1),
            ("base checkpoint", "bertshare", None, 89.3),
        ),
    ),
    notes=(
        "§5 gives these in its text, not in a table. A run of another size (a 10-layer subset is `10L-1024H`) is "
        "shown beside the base row of its model and variant.",
    ),
    label="§5",
)


@register
@dataclass
class DiscoFuseTask(Task):
    """DiscoFuse sentence fusion (Geva et al. 2019); the paper uses the balanced Wikipedia portion (4.5M train).

    Source = incoherent_first + " " + incoherent_second; target = coherent_first (+ " " + coherent_second when
    non-empty). Hub: ``google-research-datasets/discofuse``, config ``discofuse-wikipedia``.
    Local files: the release TSV with its header line and 8 columns (``coherent_first_sentence,
    coherent_second_sentence, incoherent_first_sentence, incoherent_second_sentence, discourse_type,
    connective_string, has_coref_type_pronoun, has_coref_type_nominal``); ``data_dir`` holds
    ``{train,dev,test}_balanced.tsv`` (the release's ``discofuse_v1/wikipedia/`` folder) or ``{train,dev,test}.tsv``.
    Default ``source_replacements={'"': '`'}``: the released checkpoint "was not trained on the double quotation
    mark" (its model card). Lengths 128/128 (paper §4: 128 covers all of DiscoFuse).
    Without a local copy the data is downloaded (``bertgen.data.download``): ``source="official"`` (default) is the
    balanced release ``discofuse_v1_wikipedia.zip`` the paper used; ``source="hub"`` the hub copy, which is the full,
    UNBALANCED set (a warning says so; ``train_fraction`` subsets are then of that set).
    Scored with SARI (LaserTagger protocol) and Exact; headline SARI (paper §4).
    """

    name: ClassVar[str] = "discofuse"
    default_hub_path: ClassVar[str] = "google-research-datasets/discofuse"
    default_hub_config: ClassVar[str] = "discofuse-wikipedia"
    local_layouts: ClassVar = {
        "train": ["train_balanced.tsv", "wikipedia/train_balanced.tsv", "train.tsv"],
        "validation": ["dev_balanced.tsv", "wikipedia/dev_balanced.tsv", "dev.tsv", "validation.tsv"],
        "test": ["test_balanced.tsv", "wikipedia/test_balanced.tsv", "test.tsv"],
    }
    COLUMNS: ClassVar = COLUMNS
    sources: ClassVar = (OFFICIAL, HUB)
    hub_copy_not_used: ClassVar[str] = (
        "google-research-datasets/discofuse is the full, UNBALANCED set (16.3M train); task_options.source=hub reads it"
    )
    headline: ClassVar[str] = "sari"
    paper: ClassVar = (TABLE2, TABLE6, SEC5)
    released: ClassVar = {"google/roberta2roberta_L-24_discofuse": ("robertashare", "large")}

    source_replacements: dict[str, str] = field(default_factory=lambda: {'"': "`"})
    text_style: str = "tokenized"  # the release is whitespace-tokenised ("Bailey , but the role")
    source: str = "official"  # where a download comes from: "official" (balanced release) or "hub" (unbalanced)

    @classmethod
    def metrics(cls):
        from bertgen.metrics import SARI, ExactMatch

        return {"sari": SARI("lasertagger"), "exact": ExactMatch()}

    def download_source(self):
        if self.source not in ("official", "hub"):
            raise ConfigError(f"{self.name}: task_options.source must be 'official' or 'hub', got {self.source!r}")
        chosen = super().download_source()
        if chosen is None or self.source == "official":
            return chosen
        log.warning(
            "%s: task_options.source=hub reads the Hugging Face copy, which is the full UNBALANCED Wikipedia set "
            "(16.3M train), NOT the balanced set the paper used; train_fraction subsets are then of the unbalanced "
            "data",
            self.name,
        )
        return self.sources[1]

    def _read_local(self, entry, invalid):
        for where, f in iter_tsv(expect_file(entry, self.name), invalid, len(COLUMNS), header=COLUMNS):
            yield where, *self._build(f[2], f[3], f[0], f[1])

    def hub_example(self, row):
        return self._build(
            row["incoherent_first_sentence"],
            row["incoherent_second_sentence"],
            row["coherent_first_sentence"],
            row["coherent_second_sentence"],
        )

    @staticmethod
    def _build(inc1: str, inc2: str, coh1: str, coh2: str) -> tuple[str, str]:
        source = " ".join(s for s in (inc1.strip(), inc2.strip()) if s)
        target = coh1.strip() + (" " + coh2.strip() if coh2.strip() else "") if coh1.strip() else ""
        return source, target

"""WikiSplit split-and-rephrase (Botha et al. 2018): reader, official release, metrics and the paper's Table 3.

Checksums: the Hugging Face ``datasets`` legacy loading script ``wiki_split`` (``dataset_infos.json`` and
``urls_checksums/checksums.txt``) for ``train.tsv.zip``, ``test.tsv`` and ``validation.tsv``; ``tune.tsv`` (which that
script does not download) was hashed from a byte-identical copy of the file in the google-research-datasets/wiki-split
GitHub repository at commit 80f5bddf42d1a68201b7b107ee4b8d86d82e9fde (the copy also reproduces the script's checksums
of ``test.tsv`` and ``validation.tsv``). Row counts from the same ``dataset_infos.json``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from bertgen.data.readers import iter_tsv
from bertgen.data.sources import HF_DATASETS_SCRIPTS, DatasetSource, RemoteFile
from bertgen.data.tasks.base import PaperColumn, PaperResults, Task, expect_file, paper_rows, register

SPLIT_SEPARATOR = "<::::>"  # between the split sentences of a target, as released (and as the released models emit)

_GITHUB = "https://github.com/google-research-datasets/wiki-split/raw/master"
_ORIGIN = f"{HF_DATASETS_SCRIPTS} wiki_split, dataset_infos.json / urls_checksums/checksums.txt"

OFFICIAL = DatasetSource(
    name="wikisplit",
    title="WikiSplit (Botha et al. 2018), GitHub release google-research-datasets/wiki-split",
    homepage="https://github.com/google-research-datasets/wiki-split",
    folder="wikisplit",
    builder="zip",
    layout=("train.tsv", "validation.tsv", "test.tsv", "tune.tsv"),
    files=(
        RemoteFile(
            "train.tsv.zip",
            f"{_GITHUB}/train.tsv.zip",
            96_439_435,
            "42234243209fbb8f11405372284d634728faf47eafd5799cefb932c06c7b3a54",
            _ORIGIN,
        ),
        RemoteFile(
            "validation.tsv",
            f"{_GITHUB}/validation.tsv",
            1_912_947,
            "63931ff45b7d95d60480bdcd466d69894fc02a0ec975cab8d0955e9b8cceb922",
            _ORIGIN,
        ),
        RemoteFile(
            "test.tsv",
            f"{_GITHUB}/test.tsv",
            1_926_782,
            "88c3eff253f7ff3fcce9370bb54f750bc35f646c1b6d2a45df2b993c96670f7f",
            _ORIGIN,
        ),
        RemoteFile(
            "tune.tsv",
            f"{_GITHUB}/tune.tsv",
            1_928_137,
            "67118f483438fc9f0ba12e63dc37f0eeff8bbad1873157509ced7e3e46582312",
            "hashed from a byte-identical copy of google-research-datasets/wiki-split tune.tsv at commit "
            "80f5bddf42d1a68201b7b107ee4b8d86d82e9fde",
        ),
    ),
    members={"train.tsv": "train.tsv"},
    rows={"train": 989_944, "validation": 5_000, "test": 5_000, "tune": 5_000},
    download_size=96_439_435 + 1_912_947 + 1_926_782 + 1_928_137,
    note="train.tsv is unzipped from train.tsv.zip; the other three are used as published.",
)

# Table 3 - WikiSplit (test): Exact, SARI, corpus BLEU (NLTK, case-sensitive).
TABLE3 = PaperResults(
    3,
    "WikiSplit (test)",
    (
        PaperColumn("Exact", "exact", 0),
        PaperColumn("SARI", "sari", 1, by_fraction="SARI"),
        PaperColumn("BLEU", "bleu", 2),
    ),
    (
        *paper_rows(None, "", ("Botha et al. (2018)", None, 14.3, 61.5, 76.4)),
        *paper_rows(
            "base",
            "base (12 layers)",
            ("bertShare", "bertshare", 16.3, 63.5, 77.2),
            ("robertaShare", "robertashare", 16.1, 63.4, 77.1),
            ("bert2bert", "bert2bert", 15.6, 63.2, 77.0),
            ("roberta2gpt", "roberta2gpt", 15.1, 63.2, 76.8),
            ("bert2rnd", "bert2rnd", 15.9, 63.1, 76.9),
            ("bert2gpt", "bert2gpt", 14.6, 62.4, 76.5),
            ("rnd2bert", "rnd2bert", 15.2, 61.8, 76.5),
            ("rnd2rnd", "rnd2rnd", 14.6, 61.7, 76.3),
            ("rnd2gpt", "rnd2gpt", 14.2, 61.3, 76.2),
            ("gpt", "gpt", 14.2, 61.1, 75.8),
        ),
        *paper_rows(
            "large",
            "large (24 layers)",
            ("robertaShare", "robertashare", 16.4, 63.8, 77.4),
            ("bertShare", "bertshare", 16.6, 63.7, 77.3),
        ),
    ),
)


@register
@dataclass
class WikiSplitTask(Task):
    """WikiSplit split-and-rephrase (Botha et al. 2018): complex sentence -> its split sentences.

    The target keeps the release's `` <::::> `` separator between sentences, as the released checkpoints emit it.
    Hub: ``google-research-datasets/wiki_split`` (``simple_sentence_1/2`` are joined with `` <::::> ``); it is
    script-only, so without a local copy the GitHub release files are downloaded instead.
    Local files: 2-column TSV without header (complex, split) as released: ``data_dir`` holds ``train.tsv``
    (unzipped ``train.tsv.zip``), ``validation.tsv``, ``test.tsv`` and optionally ``tune.tsv`` (split ``tune``).
    Default ``add_source_bos/eos=True``: the released checkpoint's input is ``bos + sentence + eos`` (model card).
    Lengths 128/128 (paper §2). Scored with SARI, Exact and corpus BLEU as Botha et al. (NLTK, case-sensitive,
    whitespace tokens; sacreBLEU beside it); headline SARI.
    """

    name: ClassVar[str] = "wikisplit"
    default_hub_path: ClassVar[str] = "google-research-datasets/wiki_split"
    local_layouts: ClassVar = {
        "train": ["train.tsv"],
        "validation": ["validation.tsv"],
        "test": ["test.tsv"],
        "tune": ["tune.tsv"],
    }
    sources: ClassVar = (OFFICIAL,)
    hub_copy_not_used: ClassVar[str] = (
        "google-research-datasets/wiki_split is a script-only repository, which datasets>=4 cannot load"
    )
    headline: ClassVar[str] = "sari"
    paper: ClassVar = (TABLE3,)
    released: ClassVar = {"google/roberta2roberta_L-24_wikisplit": ("robertashare", "large")}
    SEPARATOR: ClassVar[str] = f" {SPLIT_SEPARATOR} "

    add_source_bos: bool = True
    add_source_eos: bool = True
    text_style: str = "tokenized"  # the release is whitespace-tokenised ("Bob 's", "mid-tempo", "'' EastEnders ''")
    atomic_tokens: tuple[str, ...] = (SPLIT_SEPARATOR,)

    @classmethod
    def metrics(cls):
        from bertgen.metrics import SARI, ExactMatch, NLTKCorpusBLEU, SacreBLEU

        return {
            "sari": SARI("lasertagger"),
            "exact": ExactMatch(),
            "bleu": NLTKCorpusBLEU(),
            "sacrebleu": SacreBLEU(tokenize="none"),
        }

    def _read_local(self, entry, invalid):
        for where, (complex_, split) in iter_tsv(expect_file(entry, self.name), invalid, 2):
            yield where, complex_, split

    def hub_example(self, row):
        parts = [row["simple_sentence_1"].strip(), row["simple_sentence_2"].strip()]
        return row["complex_sentence"], self.SEPARATOR.join(p for p in parts if p)

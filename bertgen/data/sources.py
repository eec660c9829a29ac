"""Where every paper task's data officially lives: URLs, file names, sizes, sha256 checksums and row counts.

This module is data only; ``bertgen.data.download`` fetches, verifies and unpacks what it describes into the
``data_dir`` layouts the readers in ``bertgen.data.tasks`` accept. Every checksum says where it was read:

* WikiSplit: the Hugging Face ``datasets`` legacy loading script ``wiki_split`` (``dataset_infos.json`` and
  ``urls_checksums/checksums.txt``) for ``train.tsv.zip``, ``test.tsv`` and ``validation.tsv``; ``tune.tsv`` (which
  that script does not download) was hashed from a byte-identical copy of the file in the
  google-research-datasets/wiki-split GitHub repository at commit 80f5bddf42d1a68201b7b107ee4b8d86d82e9fde (the copy
  also reproduces the script's checksums of ``test.tsv`` and ``validation.tsv``).
* DiscoFuse: the ``datasets`` legacy script ``discofuse``, ``dataset_infos.json`` (entry for the ``.zip`` release in
  the ``gresearch/discofuse`` Google Cloud Storage bucket, the download the google-research-datasets/discofuse
  README links to).
* Gigaword: the ``datasets`` legacy script ``gigaword``, ``dataset_infos.json``, records 578,402,958 bytes and the
  sha256 for the Google Drive original of ``ggw_data.zip``. The hub repository ``Harvard/gigaword`` now hosts that
  archive as ``data/ggw_data.zip`` (commit "Host source data (#5)"); its dataset card after that commit gives the
  same ``download_size`` (578,402,958), so the hub copy is taken to be the same bytes. That identity was NOT
  verified by hash here (no network on the machine that wrote this): a mismatch is reported, naming both hashes.
* CNN/DailyMail, XSum, WMT14 (parquet files on the Hugging Face hub): no stored source records their sha256. They
  are verified against the sha256 the hub itself publishes for each LFS file (``dataset_info(files_metadata=True)``),
  and their row counts are checked against the dataset cards' split sizes.

Row counts: WikiSplit, Gigaword and the DiscoFuse hub copy from the same ``dataset_infos.json`` files; CNN/DM 3.0.0,
XSum and WMT14 de-en from their hub dataset cards; DiscoFuse balanced: not recorded in any stored source (the
paper, Rothe et al. TACL 2020 §4, says about 4.5M training examples).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

HF_DATASETS_SCRIPTS = "Hugging Face datasets legacy loading script"


@dataclass(frozen=True)
class RemoteFile:
    """One published file. ``url`` for a plain HTTP(S) download; ``url=None``: the file ``path`` of the source's hub
    repository (its ``hub`` field). ``sha256=None`` means no recorded checksum (then the hub's own is used)."""

    path: str
    url: str | None = None
    size: int | None = None
    sha256: str | None = None
    checksum_origin: str = ""


@dataclass(frozen=True)
class HubRepo:
    """Files of a Hugging Face hub dataset repository: ``patterns`` (fnmatch, on the repository's file list)."""

    repo_id: str
    revision: str = "main"
    patterns: tuple[str, ...] = ()
    repo_type: str = "dataset"


@dataclass(frozen=True)
class DatasetSource:
    """A task's official source and what ``bertgen.data.download`` makes of it.

    ``folder``: the sub-folder of the download destination that becomes the task's ``data_dir``; ``layout``: the files
    it then holds; ``builder``: the unpacking step in ``download.py`` (``BUILDERS``); ``members``: output file ->
    archive member path suffix, for archives; ``rows``: expected examples per split (None = not recorded)."""

    name: str
    title: str
    homepage: str
    folder: str
    builder: str
    layout: tuple[str, ...]
    files: tuple[RemoteFile, ...] = ()
    hub: HubRepo | None = None
    members: Mapping[str, str] = field(default_factory=dict)
    rows: Mapping[str, int | None] = field(default_factory=dict)
    download_size: int | None = None
    note: str = ""


_WIKISPLIT_GITHUB = "https://github.com/google-research-datasets/wiki-split/raw/master"
_WIKISPLIT_ORIGIN = f"{HF_DATASETS_SCRIPTS} wiki_split, dataset_infos.json / urls_checksums/checksums.txt"

SOURCES: dict[str, DatasetSource] = {
    "wikisplit": DatasetSource(
        name="wikisplit",
        title="WikiSplit (Botha et al. 2018), GitHub release google-research-datasets/wiki-split",
        homepage="https://github.com/google-research-datasets/wiki-split",
        folder="wikisplit",
        builder="zip",
        layout=("train.tsv", "validation.tsv", "test.tsv", "tune.tsv"),
        files=(
            RemoteFile(
                "train.tsv.zip",
                f"{_WIKISPLIT_GITHUB}/train.tsv.zip",
                96_439_435,
                "42234243209fbb8f11405372284d634728faf47eafd5799cefb932c06c7b3a54",
                _WIKISPLIT_ORIGIN,
            ),
            RemoteFile(
                "validation.tsv",
                f"{_WIKISPLIT_GITHUB}/validation.tsv",
                1_912_947,
                "63931ff45b7d95d60480bdcd466d69894fc02a0ec975cab8d0955e9b8cceb922",
                _WIKISPLIT_ORIGIN,
            ),
            RemoteFile(
                "test.tsv",
                f"{_WIKISPLIT_GITHUB}/test.tsv",
                1_926_782,
                "88c3eff253f7ff3fcce9370bb54f750bc35f646c1b6d2a45df2b993c96670f7f",
                _WIKISPLIT_ORIGIN,
            ),
            RemoteFile(
                "tune.tsv",
                f"{_WIKISPLIT_GITHUB}/tune.tsv",
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
    ),
    "discofuse": DatasetSource(
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
    ),
    "discofuse_hub": DatasetSource(
        name="discofuse_hub",
        title="DiscoFuse on the Hugging Face hub: the FULL, UNBALANCED Wikipedia set (not the paper's data)",
        homepage="https://huggingface.co/datasets/google-research-datasets/discofuse",
        folder="discofuse_hub",
        builder="discofuse_parquet",
        layout=("train.tsv", "dev.tsv", "test.tsv"),
        hub=HubRepo("google-research-datasets/discofuse", "main", ("discofuse-wikipedia/*.parquet",)),
        rows={"train": 16_310_585, "validation": 168_081, "test": 163_657},
        note="only with task_options.source=hub; rows from the discofuse dataset_infos.json (balanced=False).",
    ),
    "gigaword": DatasetSource(
        name="gigaword",
        title="Gigaword headlines (Rush et al. 2015 split, UniLM org_data), ggw_data.zip hosted in Harvard/gigaword",
        homepage="https://huggingface.co/datasets/Harvard/gigaword",
        folder="gigaword",
        builder="zip",
        layout=("train.src.txt", "train.tgt.txt", "dev.src.txt", "dev.tgt.txt", "test.src.txt", "test.tgt.txt"),
        files=(
            RemoteFile(
                "data/ggw_data.zip",
                None,
                578_402_958,
                "bc0c4a2e1aa19cf2123688b87bc2d778c0d8fc24a4090e3c10a27c5faa1b898b",
                f"{HF_DATASETS_SCRIPTS} gigaword, dataset_infos.json (the Google Drive original of the same "
                "archive; same size on the hub dataset card)",
            ),
        ),
        hub=HubRepo("Harvard/gigaword", "main", ("data/ggw_data.zip",)),
        members={
            f"{s}.{side}.txt": f"org_data/{s}.{side}.txt" for s in ("train", "dev", "test") for side in ("src", "tgt")
        },
        rows={"train": 3_803_957, "validation": 189_651, "test": 1_951},
        download_size=578_402_958,
        note="a plain file download (the repository's loading script is not run); train/dev keep the archive's "
        "<unk> tokens (the hub script rewrote them to UNK).",
    ),
    "cnn_dailymail": DatasetSource(
        name="cnn_dailymail",
        title="CNN/DailyMail 3.0.0 (non-anonymised), parquet files of the hub dataset abisee/cnn_dailymail",
        homepage="https://huggingface.co/datasets/abisee/cnn_dailymail",
        folder="cnn_dailymail",
        builder="cnn_dailymail_parquet",
        layout=("train.csv", "validation.csv", "test.csv"),
        hub=HubRepo("abisee/cnn_dailymail", "main", ("3.0.0/*.parquet",)),
        rows={"train": 287_113, "validation": 13_368, "test": 11_490},
        note="3.0.0/train-0000{0,1,2}-of-00003.parquet, validation-00000-of-00001.parquet, "
        "test-00000-of-00001.parquet; sha256: the hub's LFS checksums (none recorded elsewhere).",
    ),
    "xsum": DatasetSource(
        name="xsum",
        title="BBC XSum (Narayan et al. 2018), parquet export of EdinburghNLP/xsum (revision refs/convert/parquet)",
        homepage="https://huggingface.co/datasets/EdinburghNLP/xsum",
        folder="xsum",
        builder="xsum_parquet",
        layout=("train.jsonl", "validation.jsonl", "test.jsonl"),
        hub=HubRepo("EdinburghNLP/xsum", "refs/convert/parquet", ("default/*/*.parquet",)),
        rows={"train": 204_045, "validation": 11_332, "test": 11_334},
        note="default/{train,validation,test}/0000.parquet (main holds only the loading script); sha256: the hub's "
        "LFS checksums (none recorded elsewhere).",
    ),
    "wmt14": DatasetSource(
        name="wmt14",
        title="WMT14 German-English (newstest2013 validation, newstest2014 test), parquet files of wmt/wmt14",
        homepage="https://huggingface.co/datasets/wmt/wmt14",
        folder="wmt14",
        builder="wmt14_parquet",
        layout=("train.en", "train.de", "validation.en", "validation.de", "test.en", "test.de"),
        hub=HubRepo("wmt/wmt14", "main", ("de-en/*.parquet",)),
        rows={"train": 4_508_785, "validation": 3_000, "test": 3_003},
        note="de-en/train-0000{0,1,2}-of-00003.parquet, validation-00000-of-00001, test-00000-of-00001; one folder for "
        "both directions; sha256: the hub's LFS checksums (none recorded elsewhere).",
    ),
}

# task name -> source name (both WMT14 directions read the same files)
TASK_SOURCES: dict[str, str] = {
    "wikisplit": "wikisplit",
    "discofuse": "discofuse",
    "gigaword": "gigaword",
    "cnn_dailymail": "cnn_dailymail",
    "xsum": "xsum",
    "wmt14_en_de": "wmt14",
    "wmt14_de_en": "wmt14",
}

# The hub copies the tasks named before these sources existed, and why a download does not use them.
HUB_COPIES_NOT_USED: dict[str, str] = {
    "wikisplit": "google-research-datasets/wiki_split is a script-only repository, which datasets>=4 cannot load",
    "discofuse": "google-research-datasets/discofuse is the full, UNBALANCED set (16.3M train); "
    "task_options.source=hub reads it",
}

"""``bertgen-data``: fetch the paper tasks' official data ahead of time, and say where it comes from.

    bertgen-data download discofuse xsum --dest /data        # -> /data/discofuse, /data/xsum (data_dir=...)
    bertgen-data list                                        # source, size, rows and sha256 of every file
    bertgen-data vocab wmt14_en_de --kind wordpiece --vocab-size 32000 --cased --out vocab/wmt14  # a task vocabulary

(``python -m bertgen.data`` is the same program.) The download is the code a DataModule runs when it has no local
copy, so a compute node without network can train from ``data_dir=<dest>/<task>`` prepared on a login node.

Subcommands are entries of ``COMMANDS`` (name -> ``Command(help, configure, run)``): ``configure`` adds the
subcommand's arguments to its parser, ``run`` takes the parsed arguments and returns the exit code. A new
subcommand is one more entry.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bertgen.data import ceiling
from bertgen.data.download import all_sources
from bertgen.data.errors import DatasetUnavailableError
from bertgen.data.sources import DatasetSource
from bertgen.data.tasks import TASKS
from bertgen.errors import BertgenError


@dataclass(frozen=True)
class Command:
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def _tasks_of(source: DatasetSource) -> list[str]:
    return all_sources().get(source.name, (source, []))[1]


def _task_sources() -> list[str]:
    """The tasks with an official source, in the registry's order."""
    return [name for name, cls in TASKS.items() if cls.sources]


def _size(n: int | None) -> str:
    if n is None:
        return "size not recorded"
    for unit, div in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= div:
            return f"{n / div:.2f} {unit} ({n:,} B)"
    return f"{n} B"


# ---- download ---------------------------------------------------------------------------------------------------
def _configure_download(p: argparse.ArgumentParser) -> None:
    names = sorted(set(_task_sources()) | set(all_sources()))
    p.add_argument(
        "tasks",
        nargs="+",
        metavar="task",
        choices=[*names, "all"],
        help=f"task or source names ({', '.join(names)}) or 'all' (every paper task's official source)",
    )
    p.add_argument(
        "--dest",
        default=None,
        help="destination folder (default: bertgen's data cache, <BERTGEN_DATA_CACHE>/sources, where "
        "train.py looks when no data_dir is given); each source lands in DEST/<name>",
    )
    p.add_argument(
        "--mirror",
        default=None,
        help="base URL replacing every official host (<mirror>/<host>/<path>; the hub as "
        "<mirror>/huggingface.co); default $BERTGEN_DATA_MIRROR",
    )
    p.add_argument("--keep-downloads", action="store_true", help="keep the downloaded archives / parquet files")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--timeout", type=float, default=60.0, help="network timeout in seconds (default 60)")


def _run_download(args: argparse.Namespace) -> int:
    from bertgen.data.download import prepare_source, resolve_source

    names = _task_sources() if "all" in args.tasks else args.tasks
    sources: dict[str, tuple[DatasetSource, str]] = {}
    for name in names:
        src = resolve_source(name)
        sources.setdefault(src.name, (src, name))
    failed = 0
    for src, name in sources.values():
        try:
            folder = prepare_source(
                src,
                args.dest,
                mirror=args.mirror,
                progress=not args.no_progress,
                keep_downloads=args.keep_downloads,
                timeout=args.timeout,
                task=name,
            )
        except DatasetUnavailableError as e:
            print(f"error: {e}", file=sys.stderr)
            failed += 1
            continue
        tasks = ", ".join(_tasks_of(src)) or name
        print(f"{src.name}: {folder}  (train with data_dir={folder}; tasks: {tasks})")
    return 1 if failed else 0


# ---- list -------------------------------------------------------------------------------------------------------
def _configure_list(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="machine-readable output")


def _source_record(src: DatasetSource) -> dict:
    from bertgen.data.download import source_urls

    return {
        "name": src.name,
        "tasks": _tasks_of(src),
        "title": src.title,
        "homepage": src.homepage,
        "download_size": src.download_size,
        "rows": dict(src.rows),
        "layout": list(src.layout),
        "urls": source_urls(src),
        "files": [
            {"path": f.path, "url": f.url, "bytes": f.size, "sha256": f.sha256, "sha256_from": f.checksum_origin}
            for f in src.files
        ],
        "hub": None
        if src.hub is None
        else {"repo_id": src.hub.repo_id, "revision": src.hub.revision, "patterns": list(src.hub.patterns)},
        "note": src.note,
    }


def _run_list(args: argparse.Namespace) -> int:
    records = [_source_record(s) for s, _ in all_sources().values()]
    if args.json:
        print(json.dumps(records, indent=2))
        return 0
    for r in records:
        print(f"{r['name']}  [{', '.join(r['tasks'])}]")
        print(f"  source:    {r['title']}")
        print(f"  homepage:  {r['homepage']}")
        print(f"  download:  {_size(r['download_size'])}")
        rows = ", ".join(f"{k} {v:,}" if v is not None else f"{k} not recorded" for k, v in r["rows"].items())
        print(f"  rows:      {rows}")
        for f in r["files"]:
            where = f["url"] or f"hub file {r['hub']['repo_id']}@{r['hub']['revision']}:{f['path']}"
            print(f"  file:      {f['path']}  {_size(f['bytes'])}  {where}")
            print(f"             sha256 {f['sha256'] or 'not recorded'}  (from: {f['sha256_from'] or '-'})")
        if r["hub"] is not None and not any(f["url"] is None for f in r["files"]):
            h = r["hub"]
            print(
                f"  files:     {' '.join(h['patterns'])} of {h['repo_id']}@{h['revision']} "
                "(sha256: the hub's LFS checksums, checked on download)"
            )
        print(f"  data_dir:  {', '.join(r['layout'])}")
        if r["note"]:
            print(f"  note:      {r['note']}")
        print()
    return 0


# ---- vocab ------------------------------------------------------------------------------------------------------
def _configure_vocab(p: argparse.ArgumentParser) -> None:
    from bertgen.data.vocab import KINDS

    p.add_argument(
        "task", choices=sorted(TASKS), metavar="task", help=f"a registered task ({', '.join(sorted(TASKS))})"
    )
    p.add_argument("--kind", choices=KINDS, required=True, help="wordpiece (BERT layout) or sentencepiece")
    p.add_argument("--vocab-size", type=int, required=True, help="entries in all, reserved tokens included")
    p.add_argument("--out", required=True, help="the tokenizer folder to write (any bertgen command or AutoTokenizer)")
    p.add_argument("--fields", default="source,target", help="source, target or source,target (default both)")
    p.add_argument("--max-rows", type=int, default=None, help="train on this many rows, sampled with --seed")
    p.add_argument("--seed", type=int, default=0, help="the sampling seed (default 0)")
    p.add_argument("--cased", action="store_true", help="WordPiece: keep case and accents (default: uncased)")
    p.add_argument("--data-dir", default=None, help="the task's data folder (default: its official release)")
    p.add_argument("--unused", type=int, default=99, help="WordPiece: [unusedN] slots for task markers (default 99)")


def _run_vocab(args: argparse.Namespace) -> int:
    from bertgen.data.vocab import build_vocab

    result = build_vocab(
        args.task,
        kind=args.kind,
        vocab_size=args.vocab_size,
        out=args.out,
        fields=args.fields,
        max_rows=args.max_rows,
        seed=args.seed,
        cased=args.cased,
        data_dir=args.data_dir,
        unused=args.unused,
    )
    info = result.info
    trip = info["round_trip"]
    print(
        f"{result.out}: {info['kind']} vocabulary of {info['vocab_size']:,} entries from {info['rows']:,} "
        f"{info['task']} training rows ({','.join(info['fields'])}); {trip['checked'] - trip['lost']:,} of "
        f"{trip['checked']:,} sampled texts come back exactly from their ids"
    )
    return 0


COMMANDS: dict[str, Command] = {
    "download": Command(
        "download, verify and unpack tasks' official data into DEST/<name>", _configure_download, _run_download
    ),
    "list": Command("list each task's source, size, row counts and checksums", _configure_list, _run_list),
    "ceiling": Command(
        "the task's metrics of its references passed through a tokenizer's encode/decode: the best score a model "
        "with that vocabulary can reach",
        ceiling.configure,
        ceiling.run,
    ),
    "vocab": Command(
        "train a WordPiece or SentencePiece vocabulary on a task's training split (a tokenizer folder)",
        _configure_vocab,
        _run_vocab,
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bertgen-data", description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")
    for name, cmd in COMMANDS.items():
        p = sub.add_parser(name, help=cmd.help, description=cmd.help)
        cmd.configure(p)
        p.set_defaults(_run=cmd.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args._run(args) or 0)
    except BertgenError as e:  # missing data, a bad name and the like: one line, no traceback
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

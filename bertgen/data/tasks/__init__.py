"""The tasks: one module each, every registry derived from their declarations (`bertgen.data.tasks.base.Task`).

``TASKS`` maps a task's name to its class; `task_class` / `make_task` look one up from a name or a task config (a
task defined outside bertgen is found through the config's ``module``, which registers it when imported).
"""

from bertgen.data.tasks.base import (
    SPLITS,
    TASKS,
    Example,
    FileEntry,
    PaperColumn,
    PaperResults,
    PaperRow,
    SummaryFiles,
    Task,
    make_task,
    paper_rows,
    register,
    task_class,
    text_convention,
)

# The built-in tasks register themselves on import; the order is the report's order of the paper's tables.
from bertgen.data.tasks import discofuse, wikisplit, gigaword, cnn_dailymail, xsum, wmt14, files, quickstart  # noqa: E402,F401,I001  isort: skip

__all__ = [
    "SPLITS",
    "TASKS",
    "Example",
    "FileEntry",
    "PaperColumn",
    "PaperResults",
    "PaperRow",
    "SummaryFiles",
    "Task",
    "make_task",
    "paper_rows",
    "register",
    "task_class",
    "task_metrics",
    "text_convention",
]


def task_metrics(task):
    """Fresh metrics of a task (name, config, `Task` or class) behind one call (``bertgen.metrics.TaskMetrics``)
    and the key of its headline metric in ``compute()``."""
    from bertgen.metrics import TaskMetrics

    cls = task_class(task)
    return TaskMetrics(cls.metrics()), cls.headline

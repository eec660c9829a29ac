"""The tasks: one module each, every registry derived from their declarations (`bertgen.data.tasks.base.Task`).

``TASKS`` maps a task's name to its class; `task_class` / `make_task` look one up from a name or a task config (a
task defined outside bertgen is found through the config's ``module``, which registers it when imported).
"""

from bertgen.data.tasks.base import (
    GOLD,
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
    plain_variant,
    register,
    task_class,
    text_convention,
    variant_rows,
)


def _import_builtin_tasks() -> None:
    """Every module of this package but ``base`` is a task (or several): importing it registers it."""
    import importlib
    import pkgutil

    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name != "base":
            importlib.import_module(f"{__name__}.{info.name}")


_import_builtin_tasks()

__all__ = [
    "GOLD",
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
    "plain_variant",
    "register",
    "task_class",
    "task_metrics",
    "text_convention",
    "variant_rows",
]


def task_metrics(task):
    """Fresh metrics of a task (name, config, `Task` or class) behind one call (``bertgen.metrics.TaskMetrics``)
    and the key of its headline metric in ``compute()``."""
    from bertgen.metrics import TaskMetrics

    cls = task_class(task)
    return TaskMetrics(cls.metrics()), cls.headline

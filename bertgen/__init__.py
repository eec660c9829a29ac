"""bertgen: warm-starting sequence-to-sequence models from public pre-trained checkpoints.

``from bertgen import load_generator``: apply a trained model to raw text (`bertgen.prediction.load_generator`).
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "load_generator"]


def __getattr__(name: str) -> Any:
    if name == "load_generator":  # imported on first use: `import bertgen` stays light
        from bertgen.prediction import load_generator

        return load_generator
    raise AttributeError(f"module 'bertgen' has no attribute {name!r}")

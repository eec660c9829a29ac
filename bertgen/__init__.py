"""bertgen: warm-starting sequence-to-sequence models from public pre-trained checkpoints."""

__version__ = "0.1.0"

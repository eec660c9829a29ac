"""``python -m bertgen.data``: the ``bertgen-data`` command (``bertgen.data.cli``)."""

import sys

from bertgen.data.cli import main

sys.exit(main())

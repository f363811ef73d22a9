"""``python -m engine`` is the ``profiles`` command."""

from engine.cli import main

raise SystemExit(main())

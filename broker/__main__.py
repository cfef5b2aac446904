"""``python -m broker`` is the ``chorus`` command."""

from broker.cli import main

raise SystemExit(main())

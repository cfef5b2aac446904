"""`python -m bench`: see `bench.cli` and bench/README.md."""

from bench.cli import main

raise SystemExit(main())

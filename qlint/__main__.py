"""``python -m qlint``."""

from qlint.cli import main

raise SystemExit(main())

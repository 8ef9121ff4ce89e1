"""python -m convd: the convd-cli command line."""

from .cli import main

raise SystemExit(main())

"""`python -m quartznet_tutorial` runs the `quartznet` CLI."""

from .cli import main

raise SystemExit(main())

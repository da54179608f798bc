"""`python -m quartznet_tutorial` runs the `quartznet` CLI."""

from quartznet_tutorial.cli.main import main

raise SystemExit(main())

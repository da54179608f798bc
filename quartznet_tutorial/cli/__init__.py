"""The ``quartznet`` command: :mod:`.main` parses and dispatches; each command group is a module
with ``add_arguments(parser)`` and ``run(args) -> int``; :mod:`.options` holds the shared
option types and exit codes.
"""

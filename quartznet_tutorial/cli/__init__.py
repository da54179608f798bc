"""The ``quartznet`` command: :mod:`.main` parses, dispatches and holds the error policy (exit
codes); each command is a module with ``HELP``, ``add_arguments(parser)`` and
``run(args) -> int``; :mod:`.options` holds the shared option types.
"""

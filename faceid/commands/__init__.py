"""CLI verbs of ``python -m faceid``. Each module has ``add_arguments(parser)`` and
``run(args) -> int`` (the exit status); the logic lives in the service modules."""

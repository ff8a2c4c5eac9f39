"""``qlint verify``: the real conversion (eager, FX, PT2E), its accuracy and speed, and measured remedies.

Imports torch; the CLI (``qlint.cli.verify``) loads it only for the ``verify`` command.
"""

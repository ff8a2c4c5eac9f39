"""Running user code away from qlint's own process, and remembering what it found.

``fork``: each file's check (import, build, trace, graph rules, fixes) runs in a child forked from a
process that has imported torch but never a user file; the child gets a clean ``sys.modules`` and
clean torch globals, its own stdout/stderr, a timeout, and sends its diagnostics back over a pipe.
``cache``: results keyed on everything that decides them, so an unchanged file skips torch entirely.
``imports``: the project files a file imports (part of the cache key).
"""

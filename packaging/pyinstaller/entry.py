"""Entry point of the frozen ``eid-agent`` binary (PyInstaller).

``eid-agent ARGS`` runs :func:`agent.app.cli.main`. ``eid-agent -m MODULE ARGS`` runs one of the
bundled ``agent``/``tray`` modules as ``__main__``, like ``python -m``: so code that starts a
helper process with ``[sys.executable, "-m", "tray.dialogs"]`` works the same frozen or not.
``eid-agent --dialogs`` is the dialog process (``tray.dialogs``), as
:func:`tray.interaction.dialog_command` starts it when frozen.
"""

from __future__ import annotations

import multiprocessing
import runpy
import sys

BUNDLED_PACKAGES = ("agent", "tray")


def _run_module(argv: list[str]) -> int:
    if not argv:
        print("eid-agent: -m needs a module name", file=sys.stderr)
        return 2
    module = argv[0]
    if module.split(".")[0] not in BUNDLED_PACKAGES:
        print(f"eid-agent: -m runs only bundled modules, not {module}", file=sys.stderr)
        return 2
    sys.argv = [sys.argv[0], *argv[1:]]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


def main() -> int:
    multiprocessing.freeze_support()
    args = sys.argv[1:]
    if args[:1] == ["-m"]:
        return _run_module(args[1:])
    if args[:1] == ["--dialogs"]:  # the dialog process (tray.interaction.dialog_command)
        return _run_module(["tray.dialogs", *args[1:]])
    from agent.app.cli import main as cli_main

    return cli_main(args)


if __name__ == "__main__":
    sys.exit(main())

"""Run Parsl's HTEX interchange so that it ends when its driver is gone.

Parsl starts the interchange of a HighThroughputExecutor as a child of the driver and
stops it only from the driver's shutdown. A driver killed with SIGKILL (or lost with
its node) leaves the interchange running, and with it the worker pools, whose tasks go
on writing. Started as ``python -m mapcvd.workflows.interchange_guard SCRIPT`` (the
executor's ``interchange_launch_cmd``, see :func:`~mapcvd.workflows.site_common.interchange_cmd`),
this module watches its parent from a daemon thread and ends the process within
:data:`WATCH_SECONDS` once the parent is gone; then runs ``SCRIPT`` (Parsl's
``interchange.py``, which reads its configuration from standard input) as ``__main__``.
The worker pools follow once their heartbeat to the interchange times out
(:data:`~mapcvd.workflows.site_common.HEARTBEAT`).
"""

from __future__ import annotations

import os
import runpy
import sys
import threading
import time

#: Seconds between two checks of the parent process.
WATCH_SECONDS = 1.0


def _watch_parent(parent: int) -> None:
    while True:
        time.sleep(WATCH_SECONDS)
        if os.getppid() != parent:
            os._exit(0)  # the driver is gone: nothing will ever collect our results


def main(argv: list[str]) -> None:
    """Watch the parent, then run the interchange script ``argv[1]`` as ``__main__``."""
    if len(argv) != 2:
        raise SystemExit("usage: python -m mapcvd.workflows.interchange_guard INTERCHANGE_SCRIPT")
    threading.Thread(target=_watch_parent, args=(os.getppid(),), name="driver-watch", daemon=True).start()
    script = argv[1]
    if not os.path.isfile(script):
        import shutil  # noqa: PLC0415

        script = shutil.which(script) or script
    sys.argv = [script]
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main(sys.argv)

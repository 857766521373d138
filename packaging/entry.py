"""Entry point of the PyInstaller build: the same as the `medianalysed` console script."""

import multiprocessing
import sys

from medianalysed.cli import main

if __name__ == "__main__":
    # A frozen binary re-executes itself for spawn/forkserver worker processes; this
    # turns such an invocation into the worker instead of a second daemon.
    multiprocessing.freeze_support()
    sys.exit(main())

"""`python -m medianalysed` runs the command line."""

import sys

from medianalysed.cli import main

sys.exit(main())

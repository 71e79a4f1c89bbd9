#!/usr/bin/env python
"""Train (or resume, or evaluate) a CIFAR-100 CNN with or without BA²M — see ``--help``.

The options and the run live in :mod:`tinyba2m.training` (``cli.main``); this file only calls it.
"""
import sys
import warnings

# an unknown $TINYBA2M_BACKEND / $TINYBA2M_CHECK_FINITE, or an unusable CuPy, warns on import; the command
# line refuses it itself with one line (exit status 2), so the warning would only say it twice
warnings.filterwarnings("ignore", message="TINYBA2M_", category=RuntimeWarning)

from tinyba2m.training.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())

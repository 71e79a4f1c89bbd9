#!/usr/bin/env python
"""Train (or resume, or evaluate) a CIFAR-100 CNN with or without BA²M — see ``--help``.

The options and the run live in :mod:`tinyba2m.training` (``cli.main``); this file only calls it.
"""
import sys

from tinyba2m.training.cli import main

if __name__ == "__main__":
    sys.exit(main())

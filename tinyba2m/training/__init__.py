"""Training on CIFAR-100 (or the synthetic stand-in): the run loop, evaluation under each of the
three BA²M eval weightings, atomic checkpoints, metrics CSV, plots, and the ``train_cifar.py``
command line.

- :class:`Trainer` (``Trainer(config).run(resume=False)``), :func:`evaluate_checkpoint`
- :func:`~.loop.train_epoch`, :func:`~.loop.evaluate`, :func:`~.loop.evaluate_all`
- :mod:`.checkpoint`: ``save_checkpoint`` / ``load_checkpoint`` / ``check_architecture`` / ``load_model_state``
- :mod:`.metrics`, :mod:`.plots`, :mod:`.cli` (``main(argv)``)
"""
from .checkpoint import (ArchitectureMismatchError, CheckpointError, check_architecture, load_checkpoint,
                         load_model_state, save_checkpoint)
from .config import TrainConfig
from .loop import NonFiniteLossError, RunAwayError, evaluate, evaluate_all, train_epoch
from .metrics import METRIC_COLUMNS, read_rows
from .trainer import RunFolderError, RunSaveError, Trainer, TrainingInterrupted, evaluate_checkpoint

__all__ = ["RunAwayError", "Trainer", "TrainConfig", "TrainingInterrupted", "RunFolderError", "RunSaveError",
           "NonFiniteLossError", "evaluate_checkpoint", "evaluate", "evaluate_all", "train_epoch", "save_checkpoint",
           "load_checkpoint", "check_architecture", "load_model_state", "CheckpointError", "ArchitectureMismatchError",
           "METRIC_COLUMNS", "read_rows"]

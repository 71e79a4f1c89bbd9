"""What ``--resume`` checks in a run folder before it continues (the :class:`.trainer.Trainer`
calls these with its own state):

- :func:`check_fits_config_json` — ``checkpoint.npz`` must be of the model ``config.json``
  describes (the architecture, then every parameter's name and shape): a checkpoint copied in
  from another run would otherwise resume silently and mix two models in ``metrics.csv``;
- :func:`best_problem` — ``best.npz`` must be a readable checkpoint of the run's best epoch (the
  trainer re-saves it where it is not);
- :func:`check_logs` — ``metrics.csv`` / ``ba2m_weights.csv`` must hold epochs 1..k of the
  checkpoint: a missing one is rebuilt from the ``history`` the checkpoint keeps, a malformed one
  is a one-line error, or rebuilt on request (the old file kept as ``<name>.damaged``).
"""
from __future__ import annotations

import json
import shutil

from .checkpoint import (ArchitectureMismatchError, CheckpointError, architecture, check_architecture,
                         describe_architecture, load_checkpoint, load_model_state)
from .config import TrainConfig
from .folders import RunFolderError
from .metrics import log_problem, truncate_after, write_rows


def check_fits_config_json(config_json, path, meta, model_state, make_model, log) -> None:
    """Raise :class:`.checkpoint.ArchitectureMismatchError` (one line) when the checkpoint read from
    ``path`` (``meta``, ``model_state``) is not of the model the run's ``config_json`` describes;
    ``make_model(config, num_classes)`` builds that model. A missing config.json is not checked (the
    resume rewrites it), an unreadable one is noted through ``log``."""
    try:
        saved = json.loads(config_json.read_text())
        want = {k: saved[k] for k in ("model", "attention", "ba2m_placement", "num_classes")}
        config = TrainConfig.from_dict(saved)
    except FileNotFoundError:
        return
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log(f"warning: {config_json} is unreadable ({type(exc).__name__}: {exc}); the checkpoint is not checked "
            f"against it")
        return
    got = architecture(meta)
    differs = [k for k in want if want[k] is not None and want[k] != got[k]
               and not (k == "ba2m_placement" and want["attention"] in ("none", "bam"))]
    detail = ", ".join(f"{k}: checkpoint {got[k]!r} vs config.json {want[k]!r}" for k in differs)
    if not differs:
        try:
            load_model_state(make_model(config, int(want["num_classes"])), model_state, path)
        except ArchitectureMismatchError as exc:
            detail = str(exc).split(": ", 1)[-1]
        else:
            return
    raise ArchitectureMismatchError(
        f"--resume: {path} holds a {describe_architecture(got)}, but {config_json} describes a "
        f"{describe_architecture(want)} ({detail}): the checkpoint belongs to another run. Put this run's own "
        f"checkpoint back, or resume the other run in its own folder")


def best_problem(path, meta, model) -> str | None:
    """Why the ``best.npz`` at ``path`` does not hold the best epoch the checkpoint ``meta`` names
    (unreadable, another architecture, parameters that do not fit ``model``, another epoch), or None.
    Loads its state into ``model`` to check it (the caller loads the checkpoint's state after)."""
    best_epoch = int(meta["best_epoch"])
    if best_epoch < 1:
        return None  # no epoch completed yet
    try:
        best, state, _ = load_checkpoint(path)
        check_architecture(best, architecture(meta), path)
        load_model_state(model, state, path)
    except CheckpointError as exc:
        return str(exc)
    if int(best.get("epoch", -1)) != best_epoch:
        return f"{path} holds epoch {best.get('epoch')}, but the run's best is epoch {best_epoch}"
    return None


def check_logs(logs, epoch: int, history, rebuild: bool, checkpoint_name: str, log) -> None:
    """Each of ``logs`` (``(path, columns, history key)``) must hold epochs 1..``epoch``: cut back to
    them when it does; rebuilt from ``history[key]`` (the checkpoint's rows; ``history`` None for a
    checkpoint written before it kept them) when it is missing, or malformed and ``rebuild``; else
    :class:`.folders.RunFolderError`, one line offering ``--rebuild-metrics``."""
    for path, columns, key in logs:
        rows = (history or {}).get(key)
        problem = log_problem(path, columns, epoch) if path.exists() else "missing"
        if problem is None:
            truncate_after(path, epoch)
            continue
        if problem == "missing" and epoch == 0:
            continue
        if rows is None or len(rows) != epoch:
            if problem == "missing":
                log(f"warning: {path} is missing and {checkpoint_name} (written before checkpoints kept the "
                    f"history) cannot rebuild it: it restarts at epoch {epoch + 1}")
                continue
            raise RunFolderError(f"--resume: {path} is malformed ({problem}), and {checkpoint_name} holds no history "
                                 f"to rebuild it from (an older version wrote it); repair the file by hand, or "
                                 f"delete it to go on without epochs 1..{epoch}")
        damaged = path.with_name(f"{path.name}.damaged")
        if problem != "missing" and not rebuild:
            raise RunFolderError(f"--resume: {path} is malformed ({problem}); add --rebuild-metrics to rewrite it "
                                 f"from the history in {checkpoint_name} (epochs 1..{epoch}; the file is kept as "
                                 f"{damaged.name})")
        if problem != "missing":
            shutil.copyfile(path, damaged)
        write_rows(path, columns, rows)
        log(f"rebuilt {path} from the history in {checkpoint_name} (epochs 1..{epoch})"
            + ("" if problem == "missing" else f"; the malformed file is kept as {damaged.name}"))

"""Checkpoints: one ``.npz`` file (``allow_pickle=False``) per saved state, written atomically.

Layout of the archive:

- ``model/<qualified name>``  every parameter and buffer (``Module.state_dict``),
- ``optim/<name>``            the optimiser's arrays (SGD momentum buffers),
- ``meta``                    a uint8 array holding UTF-8 JSON: format tag and version, package
                              version, architecture (``model``, ``attention``, ``ba2m_placement``,
                              ``num_classes``), ``epoch`` (completed epochs), ``global_step``,
                              best metric, the run's config, the host RNG state and the
                              optimiser's hyper-parameters.

Atomic: the archive is written to a temporary file in the same folder, flushed and fsync'ed, then
moved over the target with ``os.replace`` — a crash leaves either the old or the new file, never
a torn one. Loading checks the format tag; :func:`check_architecture` compares the stored
architecture with the model about to receive it before any array is copied.
"""
from __future__ import annotations

import json
import os
import pathlib
import tempfile

from .. import __version__, backend

FORMAT = "tinyba2m-checkpoint"
FORMAT_VERSION = 1
ARCH_KEYS = ("model", "attention", "ba2m_placement", "num_classes")


class CheckpointError(ValueError):
    """A checkpoint file is missing, damaged or not a tinyba2m checkpoint."""


class ArchitectureMismatchError(CheckpointError):
    """A checkpoint was written for a different architecture than the model it is loaded into."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path, write) -> None:
    """Call ``write(fileobj)`` on a temporary file next to ``path``, then rename it over ``path``."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def _encode_meta(meta: dict):
    np = backend.numpy_module
    return np.frombuffer(json.dumps(meta, sort_keys=True).encode("utf-8"), dtype=np.uint8).copy()


def architecture(meta_or_config: dict) -> dict:
    return {k: meta_or_config.get(k) for k in ARCH_KEYS}


def describe_architecture(arch: dict) -> str:
    return (f"{arch.get('model')} with attention={arch.get('attention')} "
            f"(placement {arch.get('ba2m_placement')}), {arch.get('num_classes')} classes")


def save_checkpoint(path, model_state: dict, optim_arrays: dict, meta: dict) -> None:
    """Write model and optimiser arrays plus ``meta`` (JSON-able; must hold the ARCH_KEYS)."""
    missing = [k for k in ARCH_KEYS if k not in meta]
    if missing:
        raise ValueError(f"save_checkpoint: meta lacks the architecture keys {missing}")
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "package_version": __version__, **meta}
    arrays = {f"model/{k}": v for k, v in model_state.items()}
    arrays.update({f"optim/{k}": v for k, v in optim_arrays.items()})
    arrays["meta"] = _encode_meta(meta)
    atomic_write(path, lambda f: backend.save_npz(f, arrays))


def load_checkpoint(path):
    """Read a checkpoint: returns ``(meta, model_state, optim_arrays)`` (host arrays)."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        data = backend.load_npz(path)
    except Exception as exc:  # zipfile.BadZipFile, ValueError (pickled content), OSError, EOFError
        raise CheckpointError(f"{path} is not a readable .npz checkpoint ({type(exc).__name__}: {exc})") from exc
    if "meta" not in data:
        raise CheckpointError(f"{path} is an .npz file but not a tinyba2m checkpoint (no 'meta' entry)")
    try:
        meta = json.loads(bytes(data["meta"].tobytes()).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: damaged checkpoint metadata ({exc})") from exc
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a tinyba2m checkpoint (format {meta.get('format')!r})")
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{path} was written by a newer tinyba2m (checkpoint format {meta['format_version']}, "
                              f"this version reads {FORMAT_VERSION})")
    model_state = {k[len("model/"):]: v for k, v in data.items() if k.startswith("model/")}
    optim_arrays = {k[len("optim/"):]: v for k, v in data.items() if k.startswith("optim/")}
    return meta, model_state, optim_arrays


def check_architecture(meta: dict, expected: dict, path="checkpoint") -> None:
    """Raise :class:`ArchitectureMismatchError` naming both architectures if they differ."""
    stored, wanted = architecture(meta), architecture(expected)
    if stored != wanted:
        diff = ", ".join(f"{k}: checkpoint {stored[k]!r} vs requested {wanted[k]!r}" for k in ARCH_KEYS if stored[k] != wanted[k])
        raise ArchitectureMismatchError(
            f"{path} holds a {describe_architecture(stored)}, but the requested model is a "
            f"{describe_architecture(wanted)} ({diff})")


def load_model_weights(model, path, expected_arch: dict):
    """Check the architecture, then load the model arrays of the checkpoint at ``path``;
    returns the checkpoint's meta. ``load_state_dict`` also checks every name and shape."""
    meta, model_state, _ = load_checkpoint(path)
    check_architecture(meta, expected_arch, path)
    try:
        model.load_state_dict(model_state)
    except ValueError as exc:
        raise ArchitectureMismatchError(f"{path}: {exc}") from exc
    return meta

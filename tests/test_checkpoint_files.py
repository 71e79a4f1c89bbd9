"""Checkpoint loading refuses everything that is not a tinyba2m checkpoint with one clear
sentence, and never unpickles anything (a pickle that would create a file on loading is refused
without the file appearing)."""
import pathlib
import pickle

import numpy as np
import pytest

from tinyba2m.nn import Linear, Sequential
from tinyba2m.training.checkpoint import (ArchitectureMismatchError, CheckpointError, load_checkpoint, load_model_state,
                                          save_checkpoint)
from tinyba2m.training.cli import main

ARCH = {"model": "tiny", "attention": "none", "ba2m_placement": "every", "num_classes": 3}


class CreatesFileWhenUnpickled:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def write_foreign_files(tmp_path):
    """name -> path of files that are not checkpoints."""
    marker = tmp_path / "unpickled"
    files = {"text": tmp_path / "notes.npz", "empty": tmp_path / "empty.npz", "pickle": tmp_path / "weights.pkl",
             "npy": tmp_path / "array.npy", "npz with a pickled entry": tmp_path / "objects.npz"}
    files["text"].write_text("these are not the weights you are looking for\n")
    files["empty"].write_bytes(b"")
    files["pickle"].write_bytes(pickle.dumps({"w": CreatesFileWhenUnpickled(marker)}))
    np.save(files["npy"], np.ones(3))
    np.savez(files["npz with a pickled entry"], meta=np.array([CreatesFileWhenUnpickled(marker)], dtype=object))
    return files, marker


def test_foreign_files_are_not_tinyba2m_checkpoints(tmp_path):
    files, marker = write_foreign_files(tmp_path)
    for name, path in files.items():
        with pytest.raises(CheckpointError) as err:
            load_checkpoint(path)
        msg = str(err.value)
        assert f"{path} is not a tinyba2m checkpoint" in msg, f"{name}: {msg}"
        assert "allow_pickle" not in msg, f"{name}: numpy's hint leaked: {msg}"
    assert not marker.exists(), "a pickle was loaded"
    with pytest.raises(CheckpointError, match=r"a Python pickle, which is never loaded"):
        load_checkpoint(files["pickle"])
    with pytest.raises(CheckpointError, match=r"holds pickled Python objects, which are never loaded"):
        load_checkpoint(files["npz with a pickled entry"])
    with pytest.raises(CheckpointError, match=r"a single \.npy array"):
        load_checkpoint(files["npy"])


def test_truncated_archive_is_named_as_such(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(CheckpointError, match="is not a tinyba2m checkpoint: not a readable .npz checkpoint archive"):
        load_checkpoint(bad)


@pytest.mark.parametrize("kind", ["pickle", "text"])
def test_eval_only_on_a_foreign_file_exits_2_with_one_line(tmp_path, capsys, kind):
    files, marker = write_foreign_files(tmp_path)
    with pytest.raises(SystemExit) as err:
        main(["--eval-only", "--checkpoint", str(files[kind])])
    assert err.value.code == 2
    msg = capsys.readouterr().err
    assert "not a tinyba2m checkpoint" in msg and "allow_pickle" not in msg and "Traceback" not in msg
    assert not marker.exists()


def tiny_model():
    return Sequential(Linear(4, 3))


def test_checkpoint_with_nan_weights_is_damaged_not_another_architecture(tmp_path):
    state = tiny_model().state_dict()
    state["0.w"][0, 0] = np.nan
    path = tmp_path / "nan.npz"
    save_checkpoint(path, state, {}, dict(ARCH))
    with pytest.raises(CheckpointError, match=r"damaged checkpoint: .*0\.w: 1 of 12 values are not finite") as err:
        load_model_state(tiny_model(), load_checkpoint(path)[1], path)
    assert not isinstance(err.value, ArchitectureMismatchError)
    state = tiny_model().state_dict()
    state["0.w"] = np.zeros((4, 5))
    save_checkpoint(path, state, {}, dict(ARCH))
    with pytest.raises(ArchitectureMismatchError, match=r"0\.w: expected shape \(4, 3\), got \(4, 5\)"):
        load_model_state(tiny_model(), load_checkpoint(path)[1], path)

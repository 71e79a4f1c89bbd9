"""One BA²M default (issue 22): the library (``build_model``), the command line
(``train_cifar.py``), the benchmark (``python -m tinyba2m.bench``) and the study
(``python -m tinyba2m.study ba2m``) all take the placement, and every other BA²M option, from
``BA2MOptions()``."""
import dataclasses
import pathlib

from tinyba2m import backend
from tinyba2m.attention import BA2MOptions
from tinyba2m.bench.step import STEP_ROWS, make_training_step
from tinyba2m.models import ba2m_modules, build_model
from tinyba2m.study import ba2m as study
from tinyba2m.training import cli

DEFAULT = BA2MOptions()


def test_the_default_placement_is_the_measured_one():
    assert DEFAULT.placement == "last"  # docs/BA2M.md section 4: BA²M in every block trained worse


def test_library_cli_bench_and_study_share_one_default():
    backend.seed(0)
    library = [m.options for _, m in ba2m_modules(build_model("resnet20", "ba2m", num_classes=10))]
    assert len(library) == 3 and all(o == DEFAULT for o in library)
    config = cli._config_from_args(cli.build_parser().parse_args([]))
    assert config.ba2m_options() == DEFAULT
    assert config.ba2m_placement == DEFAULT.placement
    model, _ = make_training_step("resnet20", "ba2m", 2, num_classes=10)
    assert all(m.options == DEFAULT for _, m in ba2m_modules(model))
    assert STEP_ROWS[:3] == ("none", "se", "ba2m") and "ba2m-every" in STEP_ROWS  # the default rows, then the extra one
    args = study.build_parser().parse_args([])
    assert args.placements[0] == study.QUICK["placements"][0] == DEFAULT.placement
    cell = study.cell_config("synthetic", "resnet20", args.placements[0], "he", "sigmoid+softmax", "1.0", 0,
                             study.RECIPES["synthetic"], "unused")
    assert cell.ba2m_options() == DEFAULT


def test_every_cli_ba2m_default_is_the_libraries():
    parsed = vars(cli.build_parser().parse_args([]))
    for option, field in (("ba2m_placement", "placement"), ("ba2m_sar", "sar_activation"),
                          ("ba2m_temperature", "temperature"), ("ba2m_normalisation", "normalisation")):
        assert parsed[option] == getattr(DEFAULT, field), option
    assert {f.name for f in dataclasses.fields(BA2MOptions)} >= {"placement", "sar_activation"}


def test_the_docs_give_the_same_default():
    doc = (pathlib.Path(__file__).parent.parent / "docs" / "BA2M.md").read_text()
    row = next(line for line in doc.splitlines() if line.startswith("| `placement` |"))
    assert row.split("|")[2].strip() == f'`"{DEFAULT.placement}"`'

"""The benchmark runs end to end on a tiny batch and writes every figure; profiling leaves the
model untouched."""
import json

import pytest

from tinyba2m.bench.__main__ import main
from tinyba2m.bench.kernels import ConvShape, conv_shapes_of
from tinyba2m.bench.step import BA2M_PARTS, STEP_PARTS, ba2m_time_shares, make_training_step, step_part_shares
from tinyba2m.models import ba2m_modules, build_model


def test_bench_writes_every_figure(tmp_path, capsys):
    path = tmp_path / "bench.json"
    assert main(["--batch-size", "2", "--repeats", "1", "--json", str(path)]) == 0
    figures = json.loads(path.read_text())
    assert figures["matmul_gflops"] > 0
    assert len(figures["convs"]) >= 5 and all(c["total_gflops"] > 0 for c in figures["convs"])
    steps = figures["training_steps"]
    assert set(steps) == {"none", "se", "ba2m", "ba2m-every"}
    assert steps["none"]["ratio_to_none"] == 1.0
    assert all(s["images_per_s"] > 0 and s["peak_step_memory_bytes"] > 0 for s in steps.values())
    shares = steps["ba2m"]["ba2m_time_share"]
    assert set(shares) == set(BA2M_PARTS) and all(0 < v < 1 for v in shares.values())
    parts = steps["none"]["part_time_share"]
    assert set(parts) == set(STEP_PARTS) and all(0 < parts[p] < 1 for p in ("conv", "batch norm", "activations"))
    assert abs(sum(parts.values()) - 1) < 1e-9
    out = capsys.readouterr().out
    assert "matmul ceiling" in out and "images/s" in out and "share of the plain (none) step: conv" in out


def test_conv_shapes_of_resnet20():
    shapes = conv_shapes_of(build_model("resnet20", "none"), (2, 3, 32, 32))
    labels = [s.label() for s in shapes]
    assert labels[0] == "3->16 3x3 @32x32"
    assert "16->32 3x3 s2 @32x32" in labels and "64->64 3x3 @8x8" in labels
    s = ConvShape((2, 16, 32, 32), (16, 16, 3, 3), (1, 1), (1, 1), (1, 1))
    assert s.forward_flops() == 2 * 2 * 16 * 32 * 32 * 16 * 9


def test_the_extra_row_has_ba2m_in_every_block():
    from tinyba2m.attention import BA2M
    for row, modules in (("ba2m", 3), ("ba2m-every", 9)):
        model, _ = make_training_step("resnet20", row, 2)
        assert sum(isinstance(m, BA2M) for _, m in model.named_modules()) == modules


def test_part_timing_restores_the_model():
    model, step = make_training_step("resnet20", "ba2m", 2)
    ba2m_time_shares(model, step, repeats=1)
    for _, mod in ba2m_modules(model):   # the timing wraps the BA2M children, never module globals
        assert {name for name, _ in mod.children()} == {"channel_branch", "local_branch", "global_branch", "sar", "weighting"}
        for _, child in mod.children():
            assert "forward" not in vars(child) and "backward" not in vars(child)


def test_step_part_timing_restores_the_model():
    model, step = make_training_step("resnet20", "none", 2)
    shares = step_part_shares(model, step, repeats=1)
    assert shares["conv"] > 0 and shares["batch norm"] > 0
    assert all("forward" not in vars(m) and "backward" not in vars(m) for _, m in model.named_modules())


@pytest.mark.parametrize("attention", ["none", "se", "ba2m"])
@pytest.mark.parametrize("placement", ["last", "every"])
def test_torch_twins_have_the_same_parameter_counts(attention, placement):
    pytest.importorskip("torch")
    from tinyba2m.bench.torch_ref import parameter_count, torch_resnet20
    options = {"placement": placement} if attention != "none" else {}
    assert parameter_count(torch_resnet20(attention, placement=placement)) == \
        build_model("resnet20", attention, **options).num_parameters()
    assert parameter_count(torch_resnet20(attention)) == build_model("resnet20", attention).num_parameters()


def test_torch_twin_runs_a_step_with_the_right_shapes():
    torch = pytest.importorskip("torch")
    from tinyba2m.bench.torch_ref import torch_resnet20
    model = torch_resnet20("ba2m", num_classes=7).train()
    logits = model(torch.randn(3, 3, 32, 32))
    assert tuple(logits.shape) == (3, 7)
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_vs_torch_prints_the_ratios(tmp_path, capsys):
    pytest.importorskip("torch")
    path = tmp_path / "bench.json"
    assert main(["--batch-size", "2", "--repeats", "1", "--vs-torch", "--json", str(path)]) == 0
    side = json.loads(path.read_text())["vs_torch"]
    assert side["available"] and side["threads"] >= 1
    assert set(side["training_steps"]) == {"none", "se", "ba2m", "ba2m-every"}
    for entry in list(side["training_steps"].values()) + side["convs"]:
        assert entry["speed_ratio_min"] > 0 and entry["torch"]["min_s"] > 0 and entry["tinyba2m"]["min_s"] > 0
    assert "Side by side with PyTorch" in capsys.readouterr().out


def test_vs_torch_without_torch_says_how_to_get_it(tmp_path, capsys, monkeypatch):
    from tinyba2m.bench import __main__ as bench_main
    monkeypatch.setattr(bench_main, "torch_available", lambda: (False, "PyTorch cannot be imported (test)"))
    path = tmp_path / "bench.json"
    assert main(["--batch-size", "2", "--repeats", "1", "--vs-torch", "--json", str(path)]) == 0
    assert json.loads(path.read_text())["vs_torch"] == {"available": False, "reason": "PyTorch cannot be imported (test)"}
    assert "--vs-torch" in capsys.readouterr().out and "pip install" in bench_main.TORCH_HINT


def test_interleaved_seconds_alternates_the_sides():
    from tinyba2m.bench.versus import interleaved_seconds
    order = []
    t = interleaved_seconds({"a": lambda: order.append("a"), "b": lambda: order.append("b")}, repeats=3, warmup=1)
    assert order == ["a", "b"] * 4
    assert all(len(v["runs_s"]) == 3 and v["min_s"] <= v["median_s"] for v in t.values())


def test_bench_counters_on_cupysim(tmp_path, capsys, monkeypatch):
    """--counters: syncs and calls per step of none / SE / BA²M on cupysim, and the names' source
    (counted here on the small CNN; the command counts ResNet-20)."""
    from tinyba2m.bench import __main__ as bench_main
    from tinyba2m.bench.step import device_counts
    monkeypatch.setattr(bench_main, "device_counts", lambda name: device_counts("smallcnn", 2))
    path = tmp_path / "counts.json"
    assert main(["--counters", "--json", str(path)]) == 0
    counts = json.loads(path.read_text())["device_counts"]
    assert set(counts["rows"]) == {"none", "se", "ba2m"}
    assert all(r["syncs_per_step"] == 0 and r["calls_per_step"] > 50 for r in counts["rows"].values())
    out = capsys.readouterr().out
    assert "syncs/step" in out and "calls/step" in out and "CuPy names from " in out
    assert counts["names"].startswith(("cupy ", "snapshot of cupy "))


@pytest.mark.slow
def test_bench_on_cupysim_runs_and_prints_the_counters(tmp_path, capsys):
    from tinyba2m import backend
    previous, path = backend.name, tmp_path / "bench.json"
    try:
        assert main(["--backend", "cupysim", "--quick", "--batch-size", "2", "--repeats", "1", "--json", str(path)]) == 0
    finally:
        backend.use_backend(previous)
    figures = json.loads(path.read_text())
    assert figures["machine"]["backend"] == "cupysim" and set(figures["device_counts"]["rows"]) == {"none", "se", "ba2m"}
    assert "syncs/step" in capsys.readouterr().out


def test_the_bench_says_whether_the_host_pool_is_on(monkeypatch):
    """threadpoolctl is a dependency (the pool is off without it); the bench prints which it is."""
    import pathlib
    import sys

    from tinyba2m import hostpool
    from tinyba2m.bench.__main__ import host_pool_line
    pyproject = (pathlib.Path(__file__).parents[1] / "pyproject.toml").read_text()
    deps = [line for line in pyproject.splitlines() if line.startswith("dependencies")]
    assert deps and '"threadpoolctl' in deps[0]
    monkeypatch.setattr(hostpool, "host_threads", lambda: 2)
    assert host_pool_line().startswith("host thread pool: on, 2 threads (threadpoolctl ")
    monkeypatch.setitem(sys.modules, "threadpoolctl", None)         # as on an install without it
    assert host_pool_line().startswith("host thread pool: OFF (threadpoolctl is not installed")


def test_conv_rows_time_each_side_in_a_process_of_its_own():
    from tinyba2m.bench.conv_rows import run_in_subprocess, side_seconds
    shapes = conv_shapes_of(build_model("resnet20", "none"), (2, 3, 32, 32))[:2]
    here = side_seconds("tinyba2m", shapes, repeats=2, threads=1, matmul_size=64)
    there = run_in_subprocess("tinyba2m", shapes, repeats=2, threads=1, matmul_size=64)
    for answer in (here, there):
        assert len(answer["convs"]) == 2 and answer["matmul"]["min_s"] > 0
        assert all(len(c["runs_s"]) == 2 and 0 < c["min_s"] <= c["median_s"] for c in answer["convs"])


def test_vs_torch_conv_rows_per_process_and_interleaved(tmp_path, capsys):
    pytest.importorskip("torch")
    from tinyba2m.bench.versus import compare_convs
    shapes = conv_shapes_of(build_model("resnet20", "none"), (2, 3, 32, 32))[:2]
    for timing in ("per-process", "interleaved"):
        rows = compare_convs(shapes, 1, 1, 64, conv_timing=timing, rounds=1)
        assert [r["timing"] for r in rows] == [timing] * 2 and all(r["speed_ratio_min"] > 0 for r in rows)
    with pytest.raises(ValueError, match="conv_timing must be one of per-process, interleaved"):
        compare_convs(shapes, 1, 1, 64, conv_timing="both")

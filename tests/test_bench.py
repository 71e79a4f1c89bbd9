"""The benchmark runs end to end on a tiny batch and writes every figure; profiling leaves the
model untouched."""
import json

from tinyba2m.attention import ba2m as ba2m_module
from tinyba2m.bench.__main__ import main
from tinyba2m.bench.kernels import ConvShape, conv_shapes_of
from tinyba2m.bench.step import BA2M_PARTS, ba2m_time_shares, make_training_step
from tinyba2m.models import ba2m_modules, build_model


def test_bench_writes_every_figure(tmp_path, capsys):
    path = tmp_path / "bench.json"
    assert main(["--batch-size", "2", "--repeats", "1", "--json", str(path)]) == 0
    figures = json.loads(path.read_text())
    assert figures["matmul_gflops"] > 0
    assert len(figures["convs"]) >= 5 and all(c["total_gflops"] > 0 for c in figures["convs"])
    steps = figures["training_steps"]
    assert set(steps) == {"none", "se", "ba2m"}
    assert steps["none"]["ratio_to_none"] == 1.0
    assert all(s["images_per_s"] > 0 and s["peak_step_memory_bytes"] > 0 for s in steps.values())
    shares = steps["ba2m"]["ba2m_time_share"]
    assert set(shares) == set(BA2M_PARTS) and all(0 < v < 1 for v in shares.values())
    out = capsys.readouterr().out
    assert "matmul ceiling" in out and "images/s" in out


def test_conv_shapes_of_resnet20():
    shapes = conv_shapes_of(build_model("resnet20", "none"), (2, 3, 32, 32))
    labels = [s.label() for s in shapes]
    assert labels[0] == "3->16 3x3 @32x32"
    assert "16->32 3x3 s2 @32x32" in labels and "64->64 3x3 @8x8" in labels
    s = ConvShape((2, 16, 32, 32), (16, 16, 3, 3), (1, 1), (1, 1), (1, 1))
    assert s.forward_flops() == 2 * 2 * 16 * 32 * 32 * 16 * 9


def test_part_timing_restores_the_model():
    model, step = make_training_step("resnet20", "ba2m", 2)
    originals = (ba2m_module.sar_forward, dict(ba2m_module.NORMALISATIONS))
    ba2m_time_shares(model, step, repeats=1)
    assert ba2m_module.sar_forward is originals[0] and ba2m_module.NORMALISATIONS == originals[1]
    for _, mod in ba2m_modules(model):
        assert "forward" not in vars(mod.channel_branch) and "backward" not in vars(mod.global_branch)

"""``python -m tinyba2m.gradcheck --json PATH --junit-xml PATH``: one record per check, strict JSON,
JUnit XML with one testcase per check, written even when a check raises, NaN-safe on its own."""
import json
import math
import textwrap
import xml.etree.ElementTree as ET

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinyba2m.gradcheck import CheckResult, registry
from tinyba2m.gradcheck.__main__ import main
from tinyba2m.gradcheck.report import result_record

OPS = textwrap.dedent('''\
    def good_forward(x, s):
        return x * s[:, None], (x, s)


    def good_backward(dout, cache):
        x, s = cache
        return dout * s[:, None], (dout * x).sum(axis=1)


    def sign_forward(x, s):
        return x * s[:, None], (x, s)


    def sign_backward(dout, cache):
        x, s = cache
        return -dout * s[:, None], (dout * x).sum(axis=1)


    def nan_forward(x, s):
        return x * s[:, None], (x, s)


    def nan_backward(dout, cache):
        x, s = cache
        return dout * s[:, None], (dout * x).sum(axis=1) * float("nan")


    def boom_forward(x, s):
        return x * s[:, None], (x, s)


    def boom_backward(dout, cache):
        raise RuntimeError("not done yet")
''')
BOOM_LINE = OPS.splitlines().index('    raise RuntimeError("not done yet")') + 1


def strict_json(path):
    """json.load that refuses the NaN / Infinity tokens Python would otherwise accept."""
    def refuse(token):
        raise ValueError(f"non-standard JSON token {token}")
    return json.loads(path.read_text(), parse_constant=refuse)


@pytest.fixture
def ops(tmp_path, monkeypatch):
    (tmp_path / "report_ops.py").write_text(OPS)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path / "report_ops.py"


def run(tmp_path, *args):
    argv = [*args, "--json", str(tmp_path / "r.json"), "--junit-xml", str(tmp_path / "r.xml")]
    return main(argv)


def test_one_record_per_check_with_errors_tolerances_and_where_it_raised(ops, tmp_path, capsys):
    targets = [a for n in ("good", "sign", "nan", "boom") for a in ("--target", f"report_ops:{n}_forward")]
    status = run(tmp_path, "relu", *targets, "--shapes", "4,3", "4")
    assert status == 1
    assert "worst rel. error" in capsys.readouterr().out          # the table is printed as always
    doc = strict_json(tmp_path / "r.json")
    assert doc["complete"] is True and doc["total"] == 5 and doc["passed"] == 2 and doc["failed"] == 3
    recs = {r["name"]: r for r in doc["checks"]}
    assert list(recs) == ["relu"] + [f"report_ops:{n}_forward" for n in ("good", "sign", "nan", "boom")]
    for r in recs.values():
        assert set(r) >= {"name", "kind", "input_shapes", "status", "worst_error", "tolerance", "gradients", "exception"}
    assert recs["relu"]["kind"] == "builtin" and recs["relu"]["status"] == "PASS" and recs["relu"]["gradients"]

    good = recs["report_ops:good_forward"]
    assert good["status"] == "PASS" and good["input_shapes"] == [[4, 3], [4]] and good["tolerance"] == 1e-6
    assert [g["shape"] for g in good["gradients"]] == [[4, 3], [4]]
    assert all(g["status"] == "PASS" and g["error"] < 1e-6 and g["tolerance"] == 1e-6 for g in good["gradients"])
    assert good["worst_error"] == max(g["error"] for g in good["gradients"])

    sign = recs["report_ops:sign_forward"]
    assert sign["status"] == "FAIL" and [g["status"] for g in sign["gradients"]] == ["FAIL", "PASS"]
    assert sign["gradients"][0]["error"] == pytest.approx(1.0)

    nan = recs["report_ops:nan_forward"]           # a NaN for the second input: FAIL, written as "nan"
    assert nan["status"] == "FAIL" and nan["worst_error"] == "nan"
    assert [g["status"] for g in nan["gradients"]] == ["PASS", "FAIL"] and nan["gradients"][1]["error"] == "nan"

    boom = recs["report_ops:boom_forward"]
    assert boom["status"] == "FAIL" and boom["gradients"] == []
    assert boom["exception"] == {"phase": "backward", "type": "RuntimeError", "message": "not done yet",
                                 "file": str(ops), "line": BOOM_LINE}

    suite = ET.parse(tmp_path / "r.xml").getroot().find("testsuite")
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == list(recs)
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("5", "2", "1")
    kinds = {c.get("name"): [e.tag for e in c if e.tag in ("failure", "error")] for c in cases}
    assert kinds == {"relu": [], "report_ops:good_forward": [], "report_ops:sign_forward": ["failure"],
                     "report_ops:nan_forward": ["failure"], "report_ops:boom_forward": ["error"]}
    error = cases[-1].find("error")
    assert f"{ops}:{BOOM_LINE}" in error.get("message") and "backward raised RuntimeError" in error.get("message")


def test_a_syntax_error_is_located_at_its_line(tmp_path, monkeypatch, capsys):
    (tmp_path / "broken_op.py").write_text("def f_forward(x):\n    return x x\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert run(tmp_path, "--target", "broken_op:f_forward", "--shapes", "3") == 1
    assert f"(raised at {tmp_path / 'broken_op.py'}:2)" in capsys.readouterr().out
    exc = strict_json(tmp_path / "r.json")["checks"][0]["exception"]
    assert (exc["phase"], exc["type"], exc["file"], exc["line"]) == ("import", "SyntaxError", str(tmp_path / "broken_op.py"), 2)


def test_written_when_a_built_in_check_raises(tmp_path, monkeypatch):
    """A built-in check that raises still goes up as before, but both files hold it first."""
    def broken():
        raise ZeroDivisionError("a broken case")
    monkeypatch.setitem(registry._CASES, "zz_broken", broken)
    with pytest.raises(ZeroDivisionError):
        run(tmp_path, "relu", "zz_broken")
    doc = strict_json(tmp_path / "r.json")
    assert doc["complete"] is False and [r["status"] for r in doc["checks"]] == ["PASS", "FAIL"]
    assert doc["checks"][1]["exception"]["type"] == "ZeroDivisionError" and doc["checks"][1]["exception"]["phase"] == "check"
    cases = ET.parse(tmp_path / "r.xml").getroot().iter("testcase")
    assert [(c.get("name"), c.find("error") is not None) for c in cases] == [("relu", False), ("zz_broken", True)]


@pytest.mark.parametrize("option", ["--json", "--junit-xml"])
def test_an_unwritable_path_is_a_usage_error(tmp_path, capsys, option):
    (tmp_path / "a_file").write_text("")
    with pytest.raises(SystemExit) as exc:
        main(["relu", option, str(tmp_path / "a_file" / "out")])
    assert exc.value.code == 2 and "cannot write" in capsys.readouterr().err


def test_without_the_options_no_file_is_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["relu"]) == 0
    assert list(tmp_path.iterdir()) == []
    assert "1/1 passed" in capsys.readouterr().out


@given(st.dictionaries(st.text("abcxyz", min_size=1, max_size=3), st.floats(0, 1e-7), min_size=0, max_size=4),
       st.sampled_from([math.nan, math.inf, -math.inf]), st.integers(0, 4))
def test_any_non_finite_error_fails_the_record(finite, bad, at):
    """Whatever CheckResult.passed says, a record with a NaN or infinite error is FAIL, and strict JSON."""
    errors = list(finite.items())
    errors.insert(min(at, len(errors)), ("bad", bad))
    rec = result_record(CheckResult("x", dict(errors), 1e-6))
    assert rec["status"] == "FAIL" and rec["worst_error"] in ("nan", "inf")
    assert [g["name"] for g in rec["gradients"] if g["status"] == "FAIL"] == ["bad"]
    json.dumps(rec, allow_nan=False)

"""scripts/benchmark_summary.py: the Markdown tables of docs/benchmark.md from each run's metrics.json."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_SPEC = importlib.util.spec_from_file_location("benchmark_summary", ROOT / "scripts/benchmark_summary.py")
benchmark_summary = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(benchmark_summary)


def write_run(folder: Path, name: str, target: float, coverage: float) -> None:
    (folder / name).mkdir()
    metrics = {"trust": {"target_precision": target, "coverage_at_target_precision": coverage}}
    (folder / name / "metrics.json").write_text(json.dumps(metrics))


def test_the_coverage_header_names_the_runs_target_precision(tmp_path, capsys) -> None:
    write_run(tmp_path, "a", 0.9, 0.5)
    write_run(tmp_path, "b", 0.9, 0.25)
    assert benchmark_summary.main(str(tmp_path), []) == 0
    lines = capsys.readouterr().out.splitlines()
    header = next(line for line in lines if "candidates" in line)
    assert "| coverage at 90 % precision |" in header and "95 %" not in header
    assert lines[lines.index(header) + 2].split(" | ")[3] == "50.0%"  # the value under that header: run a's


def test_runs_with_different_target_precisions_are_refused_naming_each(tmp_path, capsys) -> None:
    write_run(tmp_path, "a", 0.9, 0.5)
    write_run(tmp_path, "b", 0.95, 0.25)
    assert benchmark_summary.main(str(tmp_path), []) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "a: 0.9, b: 0.95" in captured.err

"""A run SIGKILLed mid-cell and restarted loses and duplicates nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from sah_bench import BenchmarkExecutor, BenchmarkSpec
from sah_bench.executor.storage import COMPLETE_MARKER, PROGRESS_LOG

FAKE_FACTORY = "sah_bench_fakes:make_fake_adapter"
BENCH = BenchmarkSpec(
    "synthetic", ("niah_single", "niah_multiquery"), {"num_samples": 5, "target_tokens": 150}
)

SCRIPT = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, sys.argv[3])
    from sah_bench import BenchmarkExecutor, BenchmarkSpec

    if __name__ == "__main__":
        executor = BenchmarkExecutor(
            sys.argv[1], adapter_factory="sah_bench_fakes:make_fake_adapter",
            backend=sys.argv[2], progress=False,
        )
        bench = BenchmarkSpec("synthetic", ("niah_single", "niah_multiquery"),
                              {"num_samples": 5, "target_tokens": 150})
        executor.run(["fake-slow"], {"dense": None, "keep2": {"keep": 2}}, [bench])
    """
)


def _progress_lines(out: Path) -> int:
    return sum(len(p.read_text().splitlines()) for p in out.rglob(PROGRESS_LOG))


def _run(script: Path, out: Path, backend: str, tests_dir: Path, env: dict[str, str]) -> None:
    subprocess.run(
        [sys.executable, str(script), str(out), backend, str(tests_dir)],
        env=env,
        check=True,
        timeout=180,
    )


@pytest.mark.parametrize("backend", ["inline", "local"])
def test_sigkill_then_restart_matches_an_uninterrupted_run(
    tmp_path: Path, tests_dir: Path, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    calls = tmp_path / "calls.log"
    env = {**os.environ, "SAH_FAKE_SLEEP": "0.15", "SAH_FAKE_CALL_LOG": str(calls)}
    out = tmp_path / "out"

    proc = subprocess.Popen(
        [sys.executable, str(script), str(out), backend, str(tests_dir)], env=env
    )
    # Kill once the second cell is part-way: one cell complete, some requests logged.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if len(list(out.rglob(COMPLETE_MARKER))) >= 1 and _progress_lines(out) >= 2:
            break
        if proc.poll() is not None:
            pytest.fail("the run finished before it could be killed; slow the fake down")
        time.sleep(0.02)
    else:
        proc.kill()
        pytest.fail("the run never reached the kill point")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(1.5)  # a local worker notices its parent is gone within ~1 s
    calls_before = len(calls.read_text().splitlines())
    assert len(list(out.rglob(COMPLETE_MARKER))) < 4

    _run(script, out, backend, tests_dir, env)
    # The uninterrupted reference runs in this process (same fake, same cells).
    reference = tmp_path / "reference"
    monkeypatch.setenv("SAH_FAKE_SLEEP", "0")
    monkeypatch.delenv("SAH_FAKE_CALL_LOG", raising=False)
    BenchmarkExecutor(reference, adapter_factory=FAKE_FACTORY, progress=False).run(
        ["fake-slow"], {"dense": None, "keep2": {"keep": 2}}, [BENCH]
    )

    cells = sorted(p.parent.relative_to(reference) for p in reference.rglob(COMPLETE_MARKER))
    assert len(cells) == 4
    for cell in cells:
        assert (out / cell / COMPLETE_MARKER).is_file()
        assert not (out / cell / PROGRESS_LOG).exists()
        got = pd.read_parquet(out / cell / "raw_results.parquet")
        want = pd.read_parquet(reference / cell / "raw_results.parquet")
        assert got["request_id"].is_unique
        cols = ["request_id", "question", "prediction", "score"]
        pd.testing.assert_frame_equal(got[cols], want[cols])
    # 4 cells x 5 requests; at most the one request in flight at the kill is asked twice.
    total_calls = len(calls.read_text().splitlines())
    assert calls_before < 20
    assert 20 <= total_calls <= 21


def test_ctrl_c_stops_the_local_pool_cleanly(tmp_path: Path, tests_dir: Path) -> None:
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "SAH_FAKE_SLEEP": "0.3", "SAH_FAKE_CALL_LOG": ""}
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, str(script), str(out), "local", str(tests_dir)], env=env
    )
    deadline = time.monotonic() + 120
    while _progress_lines(out) < 1 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 0  # the executor handles Ctrl-C and returns
    summary = json.loads((out / "run_summary.json").read_text())
    assert summary["counts"]["interrupted"] >= 1 and summary["counts"]["failed"] == 0
    # Finished work is kept; a rerun completes the rest.
    _run(script, out, "local", tests_dir, {**env, "SAH_FAKE_SLEEP": "0"})
    assert len(list(out.rglob(COMPLETE_MARKER))) == 4

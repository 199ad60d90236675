"""Every benchmark and subset family read from local hub snapshots (real schema, tiny rows).

The snapshots are built at test time by :mod:`snapshot_fixtures`, laid out as the hub repos are
on disk. Expectations come from ``shared/reference/benchmark_datasets.md``: where each subset
lives (repo, config, split, ``task`` filter), that the official prompt columns are passed
through byte for byte, answers are ``list[str]`` and the generation budget is the official one.
No test touches the network: sockets are blocked while data loads.
"""

from __future__ import annotations

import ast
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import snapshot_fixtures as fx

from sah_bench import get_benchmark, group_rows


@dataclass(frozen=True)
class Where:
    """The spec's location of one subset: repo, config, split and the ``task`` filter."""

    repo: str
    config: str
    split: str
    task_filter: str | None
    max_new_tokens: int


def _ruler_budget(task: str) -> int:
    return fx.RULER_MAXLEN[task.split("_")[0]]


def where(bench: str, subset: str, options: dict[str, Any]) -> Where:
    """Where the reference says ``bench``/``subset`` lives (written out, not derived)."""
    if bench == "longbench":
        base = subset.removesuffix("_e")
        return Where("Xnhyacinth/LongBench", subset, "test", None, fx.LONGBENCH_MAXLEN[base])
    if bench == "longbench_v2":
        return Where(
            "Xnhyacinth/LongBench-v2", subset, "test", None, {"0shot": 128, "cot": 1024}[subset]
        )
    if bench == "infinitebench":
        return Where(
            "MaxJeblick/InfiniteBench", subset, "test", None, fx.INFINITEBENCH_MAXLEN[subset]
        )
    if bench == "ruler":
        length = str(options.get("context_length", 4096))
        return Where("simonjegou/ruler", length, "test", subset, _ruler_budget(subset))
    if bench in ("ruler16k", "ruler32k"):
        repo = f"xAlg-AI/att-hub-ruler-{bench.removeprefix('ruler')}"
        return Where(repo, subset, subset, None, _ruler_budget(subset))
    if bench == "zeroscrolls":
        return Where(
            "simonjegou/zero_scrolls", "default", "test", subset, fx.ZEROSCROLLS_MAXLEN[subset]
        )
    if bench == "loogle":
        return Where("simonjegou/loogle", subset, "test", None, fx.LOOGLE_MAXLEN[subset])
    if bench == "loft_rag":
        task, length = subset.rsplit("_", 1)
        split = options.get("split", "dev")
        return Where(f"f20180301/loft-rag-{task}-{length}", "default", split, None, 256)
    if bench in ("aime2024", "aime2025"):
        return Where(f"xAlg-AI/att-hub-{bench}", bench, "test", None, 32000)
    raise AssertionError(f"no reference location for {bench}")


CHINESE_LONGBENCH = {"multifieldqa_zh", "dureader", "vcsum", "lsht", "passage_retrieval_zh"}
SNAPSHOT_BENCHMARKS: dict[str, list[dict[str, Any]]] = {
    "longbench": [{}],
    "longbench_v2": [{}],
    "infinitebench": [{}],
    "ruler": [{}, {"context_length": 8192}, {"context_length": 16384}],
    "ruler16k": [{}],
    "ruler32k": [{}],
    "zeroscrolls": [{}],
    "loogle": [{}],
    "loft_rag": [{}, {"split": "test"}],
    "aime2024": [{}],
    "aime2025": [{}],
}


def _cases() -> Iterator[Any]:
    for bench, option_sets in SNAPSHOT_BENCHMARKS.items():
        for options in option_sets:
            for subset in get_benchmark(bench).subsets:
                if bench == "longbench" and subset in CHINESE_LONGBENCH:
                    continue
                if bench == "loft_rag" and subset == "qampari_1m" and not options:
                    continue  # no dev split on the hub (tested below)
                label = "-".join([bench, subset, *map(str, options.values())])
                yield pytest.param(bench, subset, options, id=label)


@pytest.fixture(scope="module")
def snapshots(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, fx.Written]:
    root = tmp_path_factory.mktemp("hub")
    return root, fx.build_snapshots(root)


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No socket may connect while data loads; the datasets cache goes to a temp folder."""
    import datasets.config

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")


def expected_answers(source: dict[str, Any]) -> list[str]:
    value = source["answers"] if "answers" in source else source["answer"]
    if isinstance(value, str):
        if value.startswith("["):
            return [str(v) for v in ast.literal_eval(value)]
        return [value] if value else []
    return [str(v) for v in value]


def source_rows(written: fx.Written, loc: Where) -> list[dict[str, Any]]:
    rows = written[(loc.repo, loc.config, loc.split)]
    if loc.task_filter is not None:
        rows = [r for r in rows if r["task"] == loc.task_filter]
    # LooGLE's placeholder rows (no reference) cannot be scored and are skipped.
    return [r for r in rows if expected_answers(r) or loc.repo == "simonjegou/zero_scrolls"]


@pytest.mark.parametrize(("bench", "subset", "options"), list(_cases()))
def test_snapshot_rows_carry_the_official_fields(
    snapshots: tuple[Path, fx.Written], bench: str, subset: str, options: dict[str, Any]
) -> None:
    root, written = snapshots
    loc = where(bench, subset, options)
    expected = source_rows(written, loc)
    assert expected, "fixture has rows for this subset"
    rows = get_benchmark(bench, data_dir=root, **options).load_rows(subset)
    assert len(rows) == len(expected)
    for row, src in zip(rows, expected, strict=True):
        # The prompt columns are passed through byte for byte.
        assert row["context"] == src["context"]
        assert row["question"] == src["question"]
        assert row["answer_prefix"] == src["answer_prefix"]
        assert row["answers"] == expected_answers(src)
        assert all(type(a) is str for a in row["answers"])
        assert row["max_new_tokens"] == loc.max_new_tokens
        assert row["task"] == subset
        assert "__index_level_0__" not in row


def test_data_path_may_point_at_one_snapshot(snapshots: tuple[Path, fx.Written]) -> None:
    root, written = snapshots
    bench = get_benchmark("longbench", data_path=root / "Xnhyacinth/LongBench")
    rows = bench.load_rows("hotpotqa")
    src = written[("Xnhyacinth/LongBench", "hotpotqa", "test")]
    assert [r["question"] for r in rows] == [s["question"] for s in src]
    # data_path wins over data_dir (an empty folder here).
    empty = root.parent / "empty-data-dir"
    empty.mkdir(exist_ok=True)
    bench = get_benchmark("ruler", data_path=root / "simonjegou/ruler", data_dir=empty)
    assert len(bench.load_rows("vt")) == 2


def test_longbench_extras_and_e_lengths(snapshots: tuple[Path, fx.Written]) -> None:
    root, _ = snapshots
    bench = get_benchmark("longbench", data_dir=root)
    trec = bench.load_rows("trec")
    assert trec[0]["all_classes"] == ["Location", "Number", "Person"]
    assert "all_classes" not in bench.load_rows("hotpotqa")[0]
    rows = bench.load_rows("qasper_e")
    assert [r["length"] for r in rows] == list(fx.E_LENGTHS)
    assert {r["task"] for r in rows} == {"qasper_e"}
    # An _e subset scores with its base task's metric (QA-F1 here).
    assert bench.score("qasper_e", "answer 0", ["answer 0"], **{"length": 1}) == 1.0


def test_chinese_longbench_from_the_hub_copy_is_refused(
    snapshots: tuple[Path, fx.Written], tmp_path: Path
) -> None:
    root, _ = snapshots
    for subset in sorted(CHINESE_LONGBENCH):
        with pytest.raises(ValueError, match=f"{subset}.*Chinese task.*local data"):
            get_benchmark("longbench", data_dir=root).load_rows(subset)
    # ... while local data in the hub schema still serves the Chinese scorers.
    local = tmp_path / "lb"
    local.mkdir()
    row = {
        "context": "阅读以下文字并用中文简短回答：\n\n文章\n\n",
        "question": "问题：谁？\n",
        "answer_prefix": "回答：",
        "answers": ["张三"],
        "length": 10,
        "dataset": "multifieldqa_zh",
    }
    import json

    (local / "multifieldqa_zh.jsonl").write_text(json.dumps(row, ensure_ascii=False) + "\n")
    bench = get_benchmark("longbench", data_path=local)
    loaded = bench.load_rows("multifieldqa_zh")
    assert loaded[0]["question"] == row["question"] and loaded[0]["max_new_tokens"] == 64
    assert bench.score("multifieldqa_zh", "张三", loaded[0]["answers"]) == 1.0


def test_infinitebench_choice_rows_carry_their_options(
    snapshots: tuple[Path, fx.Written],
) -> None:
    root, _ = snapshots
    bench = get_benchmark("infinitebench", data_dir=root)
    rows = bench.load_rows("longbook_choice_eng")
    assert rows[0]["options"] == [
        "Walking 0",
        "Taking care of Totty",
        "Working in the dairy",
        "Light housework",
    ]
    assert [r["answers"] for r in rows] == [["A"], ["B"]]
    debug = bench.load_rows("code_debug")
    assert debug[0]["options"] == ["func_a", "func_b", "Foo.func_c", "func_d"]
    # The scorer gets the row's options and the hub's letter (the official [text, letter]).
    extras = {"options": debug[0]["options"]}
    assert debug[0]["answers"] == ["C"]
    assert bench.score("code_debug", "C. Foo.func_c", debug[0]["answers"], **extras) == 1.0
    assert bench.score("code_debug", "The answer is: Foo.func_c", ["C"], **extras) == 1.0
    assert bench.score("code_debug", "B. func_b", debug[0]["answers"], **extras) == 0.0
    choice = {"options": rows[1]["options"]}
    assert bench.score("longbook_choice_eng", "B", rows[1]["answers"], **choice) == 1.0
    assert bench.score("longbook_choice_eng", "A", rows[1]["answers"], **choice) == 0.0


def test_aime2025_answer_stored_as_a_list_repr(tmp_path: Path) -> None:
    written = fx.build_snapshots(tmp_path, aime2025_answer_repr=True)
    assert written[("xAlg-AI/att-hub-aime2025", "aime2025", "test")][1]["answer"] == "['2']"
    rows = get_benchmark("aime2025", data_dir=tmp_path).load_rows("aime2025")
    assert [r["answers"] for r in rows] == [["0"], ["2"]]
    # AIME 2024 keeps a leading-zero answer as stored.
    rows = get_benchmark("aime2024", data_dir=tmp_path).load_rows("aime2024")
    assert rows[0]["answers"] == ["001"]


def test_loogle_questions_on_one_document_are_one_request(
    snapshots: tuple[Path, fx.Written],
) -> None:
    root, _ = snapshots
    rows = get_benchmark("loogle", data_dir=root).load_rows("shortdep_qa")
    groups = group_rows(rows)
    assert [len(g.rows) for g in groups] == [3, 3]  # the placeholder document is gone


def test_zeroscrolls_filters_the_concatenated_split(snapshots: tuple[Path, fx.Written]) -> None:
    root, _ = snapshots
    rows = get_benchmark("zeroscrolls", data_dir=root).load_rows("quality")
    assert [r["id"] for r in rows] == ["quality-0", "quality-1"]
    assert all(r["answers"] == [] for r in rows)


def test_missing_or_wrong_snapshots_name_the_problem(
    snapshots: tuple[Path, fx.Written], tmp_path: Path
) -> None:
    root, _ = snapshots
    empty = tmp_path / "empty"
    empty.mkdir()
    expected = str(empty / "Xnhyacinth" / "LongBench")
    with pytest.raises(ValueError, match="no snapshot of hub repo 'Xnhyacinth/LongBench'") as err:
        get_benchmark("longbench", data_dir=empty).load_rows("qasper")
    assert expected in str(err.value)
    with pytest.raises(ValueError, match="has no 'dev' split"):
        get_benchmark("loft_rag", data_dir=root).load_rows("qampari_1m")
    with pytest.raises(ValueError, match="is not a folder"):
        get_benchmark("ruler", data_dir=tmp_path / "absent")
    # A snapshot without the asked config (RULER 8192 folder pointed at for 4096 data).
    with pytest.raises(ValueError, match="config '4096' is not in its README configs"):
        get_benchmark("ruler", data_path=root / "xAlg-AI/att-hub-ruler-16k").load_rows("vt")


def test_snapshot_without_readme_metadata_uses_config_folders(
    snapshots: tuple[Path, fx.Written], tmp_path: Path
) -> None:
    import shutil

    root, written = snapshots
    copy = tmp_path / "Xnhyacinth" / "LongBench"
    shutil.copytree(root / "Xnhyacinth" / "LongBench", copy)
    (copy / "README.md").unlink()
    rows = get_benchmark("longbench", data_path=copy).load_rows("trec_e")
    src = written[("Xnhyacinth/LongBench", "trec_e", "test")]
    assert [r["context"] for r in rows] == [s["context"] for s in src]


def test_synthetic_and_mock_accept_and_ignore_data_dir(tmp_path: Path) -> None:
    rows = get_benchmark("mock", data_dir=tmp_path).load_rows("reading_comprehension")
    assert rows and all(r["answer_prefix"] == "Answer:" for r in rows)
    assert all(r["max_new_tokens"] > 0 for r in rows)
    syn = get_benchmark("synthetic", data_dir=tmp_path, num_samples=1, target_tokens=100)
    assert syn.load_rows("vt")


def test_longbench_e_reports_the_official_length_buckets(
    snapshots: tuple[Path, fx.Written],
) -> None:
    root, _ = snapshots
    bench = get_benchmark("longbench", data_dir=root)
    rows = bench.load_rows("qasper_e")  # lengths 1500, 3999 | 4000, 7999 | 8000, 12000
    scores = [1.0, 0.0, 0.5, 1.0, 0.0, 0.25]
    # As the executor hands them over: the row's extras under "extra".
    records = [
        {"score": s, "task": "qasper_e", "extra": {"length": r["length"]}}
        for s, r in zip(scores, rows, strict=True)
    ]
    official = bench.aggregate("qasper_e", records)["official"]
    assert official == {"score": 45.83, "0-4k": 50.0, "4-8k": 75.0, "8k+": 12.5}
    # A standard task reports only the x100 score; an empty bucket is None, not nan.
    assert bench.aggregate("qasper", records[:1])["official"] == {"score": 100.0}
    assert bench.aggregate("qasper_e", records[:2])["official"]["8k+"] is None

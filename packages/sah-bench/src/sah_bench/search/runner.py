"""The config search on Ray Tune: one experiment per (method, target density).

Each experiment draws ``trials`` points of the method's search space with Optuna's TPE
(``ray.tune.search.optuna.OptunaSearch``, seeded), each trial calling
:func:`sah_bench.search.trial.evaluate_point` (invalid points are pruned inside the trial
before anything runs). Trials are function trainables with ``reuse_actors=True``, so a Tune
worker process keeps its loaded model and calibration requests from one trial to the next.

Ray: the local machine by default (``ray.init(num_cpus=...)``), a cluster with ``address``
(``"auto"`` or ``ray://host:10001``), or whatever Ray instance the caller already started.
Experiments live under ``<out>/tune/<method>_<target>``; running the same search again
restores each one (``Tuner.restore``): finished experiments come back as they were, an
interrupted one (Ctrl-C, a killed driver) runs only its missing trials. The outputs (see
:mod:`sah_bench.search.outputs`) are rewritten from all trials at the end.

``backend="optuna"`` runs the same experiments without Ray (a machine where Ray cannot run):
the same TPE sampler asks, this process evaluates one trial after another with one model
load, and an Optuna SQLite study (``<out>/optuna.db``) makes it resumable.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sah_bench.executor.factory import DEFAULT_ADAPTER_FACTORY
from sah_bench.search import methods as search_methods
from sah_bench.search.methods import DENSE, SearchMethod, build_method, check_keys, check_target
from sah_bench.search.objective import Objective
from sah_bench.search.outputs import PARAM_PREFIX, config_name, write_outputs
from sah_bench.search.trial import Calibration, TrialPayload, evaluate_point
from sah_core import search_space as sp

logger = logging.getLogger(__name__)

BACKENDS = ("ray", "optuna")

#: Keys of a trial's result row kept in the trials table.
ROW_KEYS = (
    "method",
    "target",
    "valid",
    "reason",
    "key_len",
    "fixed_density",
    "sparse_config",
    "score",
    "density",
    "output_error",
    "attention_mass_recall",
    "accuracy",
    "n_questions",
    "seconds",
)


@dataclass
class SearchSettings:
    """A search: model, methods, target densities, trials per (method, target), calibration
    set, objective, pinned fields / replaced domains (``"<role>.<field>"``), where to run."""

    model: str
    methods: Sequence[str]
    targets: Sequence[float]
    out_dir: Path
    trials: int = 16
    calibration: Calibration = field(default_factory=Calibration)
    objective: Objective = field(default_factory=Objective)
    fixed: Mapping[str, Any] = field(default_factory=dict)
    spaces: Mapping[str, sp.Domain] = field(default_factory=dict)
    adapter_factory: str = DEFAULT_ADAPTER_FACTORY
    model_kwargs: Mapping[str, Any] = field(default_factory=dict)
    device: str | None = None
    generation_kwargs: Mapping[str, Any] = field(default_factory=lambda: {"max_new_tokens": 4})
    request_kwargs: Mapping[str, Any] = field(default_factory=dict)
    address: str | None = None
    num_cpus: int | None = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_concurrent: int = 1
    seed: int = 0
    #: Ray Tune callbacks (``ray.tune.Callback``) of new experiments.
    callbacks: Sequence[Any] = ()
    #: ``ray`` (Ray Tune, default) or ``optuna`` (the same TPE and trials in this process,
    #: for a machine without Ray; resumable through ``<out>/optuna.db``).
    backend: str = "ray"

    def build_methods(self) -> list[SearchMethod]:
        """The methods, validated (unknown method, field, target, count -> ValueError)."""
        if not self.methods:
            raise ValueError(
                f"methods=[] is not allowed: name one or more of {list(search_methods.METHODS)}"
            )
        if len(set(self.methods)) != len(self.methods):
            raise ValueError(f"methods={list(self.methods)} is not allowed: a method is repeated")
        if isinstance(self.trials, bool) or not isinstance(self.trials, int) or self.trials < 1:
            raise ValueError(f"trials={self.trials!r} is not allowed: use an int >= 1")
        if not self.targets and any(m != DENSE for m in self.methods):
            raise ValueError("targets=[] is not allowed: give one or more densities in (0, 1)")
        for target in self.targets:
            check_target(target)
        if self.backend not in BACKENDS:
            raise ValueError(
                f"backend={self.backend!r} is not allowed; use one of {list(BACKENDS)}"
            )
        if self.max_concurrent < 1:
            raise ValueError(f"max_concurrent={self.max_concurrent!r} is not allowed: use >= 1")
        built = [build_method(m, self.fixed, self.spaces) for m in self.methods]
        sparse = [m for m in built if m.name != DENSE]
        if sparse:
            check_keys(sparse, list(self.fixed), "fixed field")
            check_keys(sparse, list(self.spaces), "search space")
        return built


@dataclass
class SearchResult:
    """The trials of every experiment, the written files, and whether it was interrupted."""

    rows: list[dict[str, Any]]
    paths: dict[str, Path]
    interrupted: bool


def tune_domain(domain: sp.Domain) -> Any:
    """The Ray Tune domain of a search-space domain."""
    from ray import tune

    if isinstance(domain, sp.IntRange):
        if domain.low == domain.high:
            return tune.choice([domain.low])
        if domain.log:
            return tune.lograndint(domain.low, domain.high + 1)
        return tune.randint(domain.low, domain.high + 1)
    if isinstance(domain, sp.FloatRange):
        return (tune.loguniform if domain.log else tune.uniform)(domain.low, domain.high)
    if isinstance(domain, sp.Choice):
        return tune.choice(list(domain.options))
    if isinstance(domain, sp.Budget) and isinstance(domain.share, sp.FloatRange):
        return tune.uniform(domain.share.low, domain.share.high)
    raise ValueError(f"domain {domain!r} is not allowed here: it is not searched")


def _tune_trial(config: dict[str, Any], payload: TrialPayload) -> None:
    """The Ray Tune trainable: one report with the trial's row."""
    from ray import tune

    tune.report(evaluate_point(payload, config))


def _init_ray(settings: SearchSettings) -> bool:
    """Start (or join) Ray unless the caller already did; True when this call started it."""
    # Under `uv run`, Ray would start its workers with `uv run` in a copy of the working dir
    # (a fresh environment without the extras); use this interpreter's environment. Ray reads
    # the variable when it is first imported, so set it before that import.
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    import ray

    if ray.is_initialized():
        return False
    if settings.address:
        ray.init(address=settings.address)
    else:
        ray.init(num_cpus=settings.num_cpus, include_dashboard=False)
    return True


def _rows_of(grid: Any) -> tuple[list[dict[str, Any]], int]:
    """Table rows of an experiment's finished trials and the number of those trials."""
    rows = []
    for result in grid:
        metrics = dict(result.metrics or {})
        if result.error is None and "score" not in metrics:
            continue  # never finished (the run was interrupted): resumed later
        row: dict[str, Any] = {k: metrics.get(k) for k in ROW_KEYS}
        row["trial_id"] = metrics.get("trial_id") or getattr(result, "path", None)
        for key, value in (result.config or {}).items():
            row[PARAM_PREFIX + key] = value
        if result.error is not None:
            row["status"], row["error"] = "error", f"{type(result.error).__name__}: {result.error}"
        else:
            row["status"] = "ok" if row.get("valid") else "pruned"
            row["error"] = None
        rows.append(row)
    return rows, len(rows)


def _run_experiment(
    settings: SearchSettings, method: SearchMethod, target: float
) -> tuple[list[dict[str, Any]], bool]:
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    name = config_name(method.name, target)
    storage = (Path(settings.out_dir) / "tune").resolve()
    payload = _payload(settings, method, target)
    resources = {"cpu": settings.cpus_per_trial, "gpu": settings.gpus_per_trial}
    trainable = tune.with_resources(tune.with_parameters(_tune_trial, payload=payload), resources)
    param_space = {key: tune_domain(d) for key, d in method.searched.items()}
    expected = settings.trials if param_space else 1
    path = storage / name
    if tune.Tuner.can_restore(str(path)):
        logger.info("restoring search experiment %s", path)
        tuner = tune.Tuner.restore(str(path), trainable=trainable, param_space=param_space)
    else:
        searcher = None
        if param_space:
            import optuna

            sampler = optuna.samplers.TPESampler(seed=settings.seed)
            searcher = OptunaSearch(sampler=sampler)
        tuner = tune.Tuner(
            trainable,
            param_space=param_space,
            tune_config=tune.TuneConfig(
                metric="score",
                mode="min",
                search_alg=searcher,
                num_samples=expected,
                reuse_actors=True,
                max_concurrent_trials=settings.max_concurrent,
            ),
            run_config=tune.RunConfig(
                name=name,
                storage_path=str(storage),
                verbose=0,
                failure_config=tune.FailureConfig(max_failures=0),
                callbacks=list(settings.callbacks),
            ),
        )
    grid = tuner.fit()
    rows, finished = _rows_of(grid)
    return rows, finished >= expected


def optuna_distribution(domain: sp.Domain) -> Any:
    """The Optuna distribution of a search-space domain (the ``optuna`` backend)."""
    from optuna import distributions as dist

    if isinstance(domain, sp.IntRange):
        return dist.IntDistribution(domain.low, domain.high, log=domain.log)
    if isinstance(domain, sp.FloatRange):
        return dist.FloatDistribution(domain.low, domain.high, log=domain.log)
    if isinstance(domain, sp.Choice):
        return dist.CategoricalDistribution(list(domain.options))
    if isinstance(domain, sp.Budget) and isinstance(domain.share, sp.FloatRange):
        return dist.FloatDistribution(domain.share.low, domain.share.high)
    raise ValueError(f"domain {domain!r} is not allowed here: it is not searched")


def _run_experiment_optuna(
    settings: SearchSettings, method: SearchMethod, target: float
) -> tuple[list[dict[str, Any]], bool]:
    """The same experiment without Ray: Optuna's TPE asks, this process evaluates."""
    import optuna

    name = config_name(method.name, target)
    Path(settings.out_dir).mkdir(parents=True, exist_ok=True)
    storage = f"sqlite:///{(Path(settings.out_dir) / 'optuna.db').resolve()}"
    study = optuna.create_study(
        study_name=name,
        storage=storage,
        load_if_exists=True,
        direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=settings.seed),
    )
    payload = _payload(settings, method, target)
    distributions = {k: optuna_distribution(d) for k, d in method.searched.items()}
    expected = settings.trials if distributions else 1
    complete = optuna.trial.TrialState.COMPLETE
    done = sum(t.state == complete for t in study.trials)
    for _ in range(max(0, expected - done)):
        asked = study.ask(distributions)
        row = evaluate_point(payload, asked.params)
        asked.set_user_attr("row", row)
        study.tell(asked, float(row["score"]))
    rows = []
    for trial in study.trials:
        if trial.state != complete:
            continue
        row = dict(trial.user_attrs["row"])
        row["trial_id"] = f"{name}-{trial.number}"
        row.update({PARAM_PREFIX + k: v for k, v in trial.params.items()})
        row["status"], row["error"] = ("ok" if row.get("valid") else "pruned"), None
        rows.append(row)
    return rows, len(rows) >= expected


def _payload(settings: SearchSettings, method: SearchMethod, target: float) -> TrialPayload:
    return TrialPayload(
        method=method.name,
        target=float(target),
        model=settings.model,
        adapter_factory=settings.adapter_factory,
        calibration=settings.calibration,
        objective=settings.objective,
        fixed=dict(settings.fixed),
        spaces=dict(settings.spaces),
        model_kwargs=dict(settings.model_kwargs),
        device=settings.device,
        generation_kwargs=dict(settings.generation_kwargs),
        request_kwargs=dict(settings.request_kwargs),
        seed=settings.seed,
    )


def run_search(settings: SearchSettings) -> SearchResult:
    """Run (or resume) every experiment, then write the outputs from all their trials."""
    built = settings.build_methods()
    rows: list[dict[str, Any]] = []
    interrupted = False
    sparse = [m for m in built if m.name != DENSE]
    use_ray = settings.backend == "ray"
    started = _init_ray(settings) if sparse and use_ray else False
    run = _run_experiment if use_ray else _run_experiment_optuna
    try:
        for method in sparse:
            for target in settings.targets:
                found, complete = run(settings, method, float(target))
                rows.extend(found)
                if not complete:
                    interrupted = True
                    break
            if interrupted:
                break
    finally:
        if started:
            import ray

            ray.shutdown()
    paths = write_outputs(rows, Path(settings.out_dir), [m.name for m in built])
    return SearchResult(rows, paths, interrupted)

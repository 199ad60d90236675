"""Test sessions. `uv run nox` runs the default set; `uv run nox -l` lists them.

Each `tests-*` session syncs ONLY the package under test (and what it declares) from the
lock file into a fresh venv, so an undeclared dependency fails there instead of hiding
behind the workspace venv. One pytest process per session: importing transformers is slow.
"""

from __future__ import annotations

import os
from pathlib import Path

import nox

nox.options.default_venv_backend = "uv"
nox.options.error_on_missing_interpreters = True

# Some machines (this project's CI among them) set PYTHONDONTWRITEBYTECODE=1: then every test
# process, tutorial and worker recompiles transformers and torch from source (~20 s each,
# half of a tutorial's run). The session venvs are throwaway, so let them cache bytecode.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)

PYTHON = "3.11"
ROOT = Path(__file__).parent
PACKAGES = ["sah-protocol", "sah-core", "sah-adapters", "sah-bench", "sparse-attention-hub"]
# The newest 4.57.x and the newest 5.x (the lock's version) of transformers.
TRANSFORMERS_VERSIONS = ["4.57", "5"]


def sync(
    session: nox.Session,
    package: str | None,
    *,
    extras: tuple[str, ...] = (),
    groups: tuple[str, ...] = ("test",),
    venv: str | None = None,
    editable: bool = True,
) -> None:
    """Install `package` (None = the whole workspace) and its locked deps into a venv."""
    args = ["uv", "sync", "--quiet", "--frozen", "--no-default-groups", "--exact"]
    if package is None:
        args.append("--all-packages")
    else:
        args += ["--package", package]
    for extra in extras:
        args += ["--extra", extra]
    for group in groups:
        args += ["--group", group]
    if not editable:
        args.append("--no-editable")
    env = {"UV_PROJECT_ENVIRONMENT": venv or session.virtualenv.location}
    session.run_install(*args, env=env)


# One pytest worker per core (pytest-xdist); a file's tests stay on one worker, so its
# module-scoped fixtures (tiny models, snapshots) are built once. Each worker gets one torch
# thread: two workers with two threads each would oversubscribe a 2-core machine.
XDIST = ("-n", "auto", "--dist", "loadfile")
WORKER_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def pytest(session: nox.Session, path: str, *extra: str, env: dict[str, str] | None = None) -> None:
    session.run(
        "python",
        "-m",
        "pytest",
        path,
        *XDIST,
        *extra,
        *session.posargs,
        env={**WORKER_ENV, **(env or {})},
    )


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check over the whole tree."""
    sync(session, None, groups=("dev",))
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy; strict for sah_protocol and sah_core (see pyproject.toml)."""
    sync(session, None, groups=("dev",))
    session.run("mypy", *sorted(str(p) for p in ROOT.glob("packages/*/src")))


@nox.session(name="tests-protocol", python=PYTHON)
def tests_protocol(session: nox.Session) -> None:
    sync(session, "sah-protocol")
    pytest(session, "tests/protocol")


@nox.session(name="tests-core", python=PYTHON)
def tests_core(session: nox.Session) -> None:
    sync(session, "sah-core")
    pytest(session, "tests/core")


@nox.session(name="tests-kernels", python=PYTHON)
def tests_kernels(session: nox.Session) -> None:
    """Triton kernels against their torch references, in Triton's CPU interpreter."""
    sync(session, "sah-core")
    pytest(session, "tests/kernels", env={"TRITON_INTERPRET": "1"})


@nox.session(name="tests-adapters", python=PYTHON)
@nox.parametrize("transformers", TRANSFORMERS_VERSIONS)
def tests_adapters(session: nox.Session, transformers: str) -> None:
    sync(session, "sah-adapters", extras=("smollm2",))
    if transformers != "5":
        # Replace the locked 5.x with the newest release of the older series.
        session.install(f"transformers=={transformers}.*")
    session.run("python", "-c", "import transformers as t; print('transformers', t.__version__)")
    pytest(session, "tests/adapters")


@nox.session(name="tests-bench", python=PYTHON)
def tests_bench(session: nox.Session) -> None:
    # With the `ray` extra so the Ray backend is tested on a local Ray instance.
    sync(session, "sah-bench", extras=("ray", "lm-eval"))
    pytest(session, "tests/bench", "-m", "not ray")
    # Two local Ray clusters side by side starve each other on a 2-core machine.
    # (exit code 5 = none selected, e.g. when posargs filter them all out)
    session.run(
        "python", "-m", "pytest", "tests/bench", "-m", "ray", *session.posargs, success_codes=[0, 5]
    )


@nox.session(name="tests-integration", python=PYTHON)
def tests_integration(session: nox.Session) -> None:
    """The public package, contract tests across packages, and the end-to-end paths."""
    sync(session, "sparse-attention-hub")
    pytest(session, "tests/integration")


@nox.session(python=PYTHON)
def tutorials(session: nox.Session) -> None:
    """Run every tutorial script and notebook offline; any error fails the session."""
    sync(session, "sparse-attention-hub", extras=(), groups=("tutorials",))
    session.run("python", "tutorials/run_all.py", *session.posargs)


# What an isolated install of each package must not drag in.
FORBIDDEN_IMPORTS = {
    "sah-protocol": ["torch", "transformers", "numpy"],
    "sah-core": ["transformers"],
    "sah-adapters": [],
    "sah-bench": [],
    "sparse-attention-hub": ["torch", "transformers"],
}


@nox.session(python=PYTHON)
def isolation(session: nox.Session) -> None:
    """Each package alone in a fresh venv (built, not editable) imports cleanly."""
    tmp = Path(session.create_tmp())
    for package in PACKAGES:
        venv = tmp / f"venv-{package}"
        session.run_install("uv", "venv", "--quiet", "--python", PYTHON, str(venv))
        sync(session, package, groups=(), venv=str(venv), editable=False)
        module = package.replace("-", "_")
        forbidden = FORBIDDEN_IMPORTS[package]
        check = (
            "import importlib.util, sys\n"
            f"import {module}\n"
            f"bad = [m for m in {forbidden!r} if m in sys.modules]\n"
            f"assert not bad, f'importing {module} pulled in {{bad}}'\n"
            f"installed = [m for m in {forbidden!r} if importlib.util.find_spec(m)]\n"
            f"print('{package} imports without', {forbidden!r}, '; installed:', installed)\n"
        )
        python = str(venv / "bin" / "python")
        session.run(python, "-c", check, external=True)
        if package in ("sah-protocol", "sah-core"):
            # The package alone must not even have the heavy dependency installed.
            session.run(
                python,
                "-c",
                f"import importlib.util as u; bad = [m for m in {forbidden!r} if u.find_spec(m)];"
                f" assert not bad, '{package} installs ' + str(bad)",
                external=True,
            )


nox.options.sessions = [
    "lint",
    "typecheck",
    "tests-protocol",
    "tests-core",
    "tests-kernels",
    "tests-adapters",
    "tests-bench",
    "tests-integration",
    "isolation",
    "tutorials",
]

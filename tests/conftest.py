"""Shared fixtures: a tiny simulated study (data, two briefly trained bundles, a pty-chi file).

Built once per test session; every size is the smallest that still exercises the real code
(N = 16, gridsize 2 for the PINN, a few epochs).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

#: PtychoPINN's own files (docs/design.md, "Contracts"), never copied into the repository: the
#: folder named by COMPARE_MODELS_UPSTREAM_FIXTURES, else shared/fixtures/upstream beside the clone.
UPSTREAM_FIXTURES = Path(
    os.environ.get("COMPARE_MODELS_UPSTREAM_FIXTURES")
    or Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "upstream"
)


def upstream_fixtures_missing() -> str | None:
    """Why the PtychoPINN fixtures cannot be used (None when they can)."""
    if (UPSTREAM_FIXTURES / "README.md").is_file():
        return None
    return (f"PtychoPINN fixtures not found at {UPSTREAM_FIXTURES} (set COMPARE_MODELS_UPSTREAM_FIXTURES "
            "to the folder of PtychoPINN's files)")


@pytest.fixture(scope="session")
def upstream() -> Path:
    """The PtychoPINN fixture folder; the test is skipped with a reason when it is absent."""
    reason = upstream_fixtures_missing()
    if reason:
        pytest.skip(reason)
    return UPSTREAM_FIXTURES


TINY_SIMULATION = dict(patch_size=16, object_size=64, scan="jittered", scan_step=3, jitter=0.4, dose=1e5, seed=3)


@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory) -> dict[str, Path]:
    """Paths of a tiny study: train/test NPZ, PINN and baseline bundles, pty-chi NPZ."""
    from compare_models.models.training import TrainConfig
    from compare_models.pipelines.simulate import run_simulate
    from compare_models.pipelines.train import run_train
    from compare_models.study.simulator import SimulationConfig

    root = tmp_path_factory.mktemp("tiny_study")
    # The networks train on another object (docs/design.md, "No leakage"), a smaller one to keep the
    # training short; the test object is whole, so its scored region is wide enough to score.
    simulation = SimulationConfig(**TINY_SIMULATION, train_object_size=48)
    written = run_simulate(simulation, root / "data" / "sim.npz", split="objects")
    paths = {"root": root, "train": written["train"], "test": written["test"]}
    # The PINN's region margin (6 px; default N/4 = 4) holds the groups that each half of the
    # scan forms for half-set FRC: a half's neighbours lie about sqrt(2) scan steps apart.
    for kind, gridsize, pad in (("pinn", 2, 6), ("baseline", 1, None)):
        config = TrainConfig(
            model=kind, gridsize=gridsize, epochs=2, batch_size=16, width=4, depth=2, seed=0, region_pad=pad
        ).validate()
        paths[kind], _ = run_train(config, written["train"], root / "models" / kind, progress=False)
    paths["ptychi"] = _tiny_ptychi(written["test"], root / "ptychi")
    return paths


def _tiny_ptychi(test_path: Path, out: Path) -> Path | None:
    try:
        from compare_models.pipelines.reconstruct import run_reconstruct
        from compare_models.study.ptychi_runner import ReconstructConfig, ptychi_missing
    except ImportError:
        return None
    if ptychi_missing():
        return None
    run_reconstruct(test_path, out, ReconstructConfig(epochs=8, seed=0, half_sets=True).validate(), progress=False)
    return out / "ptychi_reconstruction.npz"


# --------------------------------------------------------------------------------------------
# Tiers and time limits

#: Seconds an end-to-end test may take (setup included) before pytest-timeout stops it; the
#: default tier's limit is setup.cfg's ``timeout``.
E2E_TIMEOUT_S = 900


def pytest_collection_modifyitems(config, items):
    """End-to-end tests get the longer time limit, unless they name their own."""
    for item in items:
        if item.get_closest_marker("e2e") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(E2E_TIMEOUT_S))


# --------------------------------------------------------------------------------------------
# Flags tested by the configuration they produce


class PipelineCalled(Exception):  # noqa: N818 - a signal, not an error
    """Raised by a stand-in pipeline function with the arguments the command handed it."""

    def __init__(self, args, kwargs):
        super().__init__("pipeline called")
        self.args_given, self.kwargs_given = args, kwargs

    @property
    def config(self):
        """The configuration object: the first argument a pipeline function takes."""
        return self.args_given[0]


@pytest.fixture
def handoff(monkeypatch):
    """``handoff(cli, argv, module, name)``: run a command with the pipeline function
    ``module.name`` replaced by a stand-in that stops the command with what it was handed
    (:class:`PipelineCalled`), and return that. The command's own parsing, file reading and
    validation run for real; only the expensive step after them is left out."""
    from click.testing import CliRunner

    def run(cli, argv, module, name):
        def stand_in(*args, **kwargs):
            raise PipelineCalled(args, kwargs)

        monkeypatch.setattr(module, name, stand_in)
        result = CliRunner().invoke(cli, [str(a) for a in argv])
        if not isinstance(result.exception, PipelineCalled):
            raise AssertionError(f"the command did not reach {name} (exit {result.exit_code}):\n{result.output}")
        return result.exception

    return run

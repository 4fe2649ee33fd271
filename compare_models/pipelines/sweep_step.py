"""Run one step of a sweep cell in this process: ``python -m compare_models.pipelines.sweep_step JSON``.

JSON holds ``step`` (one of :data:`compare_models.pipelines.sweep.STEP_NAMES`), ``settings`` (that
step's configuration keys), ``cell_dir`` and optionally ``verbose`` (keep the libraries' start-up
lines in the step's log). The paths inside a cell are fixed here, so the
sweep only decides settings, never file names.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

__all__ = ["run_step", "cell_paths", "DEFAULT_SWEEP_SPLIT"]

#: The split a cell's simulate step uses when its settings name none (no shared pixels).
DEFAULT_SWEEP_SPLIT = "objects"


def cell_paths(cell_dir) -> dict[str, Path]:
    cell_dir = Path(cell_dir)
    return {
        "data": cell_dir / "data" / "data.npz",
        "train": cell_dir / "data" / "data_train.npz",
        "test": cell_dir / "data" / "data_test.npz",
        "pinn": cell_dir / "models" / "pinn",
        "baseline": cell_dir / "models" / "baseline",
        "ptychi": cell_dir / "ptychi",
        "ptychi_file": cell_dir / "ptychi" / "ptychi_reconstruction.npz",
        "ptychi_half_sets": cell_dir / "ptychi" / "half_sets",
        "compare": cell_dir / "compare",
    }


def run_step(step: str, settings: dict, cell_dir) -> None:
    from ..config import build_config

    paths = cell_paths(cell_dir)
    if step == "simulate":
        from ..io.dispatch import load_dataset
        from ..study.simulator import SimulationConfig
        from .simulate import describe_dataset, run_simulate

        config = build_config(SimulationConfig, settings, where="sweep simulate")
        # A cell always writes a train and a test set; unless the config says otherwise the
        # networks train on another object than the one they are tested on.
        written = run_simulate(config, paths["data"], split=config.split or DEFAULT_SWEEP_SPLIT)
        for role, path in written.items():
            print(f"{role}: {path}\n{describe_dataset(load_dataset(path))}")
    elif step in ("train_pinn", "train_baseline"):
        from ..models.training import TrainConfig
        from .train import describe_training, run_train

        config = build_config(TrainConfig, settings, where=f"sweep {step}")
        # Self-supervised PINN: the cell's test scan is its training data (no ground truth read).
        data = paths["test"] if config.train_on == "test-diffraction" else paths["train"]
        _, result = run_train(config, data, paths[config.model], progress=False)
        print(describe_training(result))
    elif step == "reconstruct":
        from ..study.ptychi_runner import ReconstructConfig
        from .reconstruct import describe_result, run_reconstruct

        config = build_config(ReconstructConfig, settings, where="sweep reconstruct")
        _, result = run_reconstruct(paths["test"], paths["ptychi"], config, progress=False)
        print(describe_result(result))
    elif step == "compare":
        from .compare import CompareConfig, run_compare

        arms = {
            "pinn_dir": paths["pinn"] if paths["pinn"].exists() else None,
            "baseline_dir": paths["baseline"] if paths["baseline"].exists() else None,
            "ptychi_recon_path": paths["ptychi_file"] if paths["ptychi_file"].exists() else None,
        }
        if arms["ptychi_recon_path"] and paths["ptychi_half_sets"].is_dir():
            arms["ptychi_half_sets"] = paths["ptychi_half_sets"]
        fixed = {
            "test_data": str(paths["test"]),
            "output_dir": str(paths["compare"]),
            "overwrite": True,
            "progress": False,
            **{k: (str(v) if v else None) for k, v in arms.items()},
        }
        run_compare(build_config(CompareConfig, settings, fixed, where="sweep compare"))
    else:
        raise ValueError(f"unknown sweep step {step!r}")


TENSORFLOW_STEPS = ("train_pinn", "train_baseline", "compare")


def main(argv=None) -> int:
    """Run the step named in the JSON argument; unless it says ``"verbose": true``, the
    libraries' start-up lines are kept out of the step's log (:mod:`.startup`)."""
    request = json.loads((argv or sys.argv[1:])[0])
    if request["step"] in TENSORFLOW_STEPS:
        from ..models.backend import start_backend
        from .startup import quiet_tensorflow_startup

        # Training runs on TensorFlow; compare on the backend its settings name (models.backend).
        settings = request["settings"]
        compare = request["step"] == "compare"
        choice = start_backend(
            settings.get("backend") if compare else "tensorflow", (settings.get("device") if compare else None) or "auto",
            before_import=lambda c: c.name == "tensorflow" and quiet_tensorflow_startup(verbose=bool(request.get("verbose"))),
        )
        if compare:
            request["settings"] = {**settings, "backend": choice.name}
    run_step(request["step"], request["settings"], request["cell_dir"])
    return 0


if __name__ == "__main__":
    sys.exit(main())

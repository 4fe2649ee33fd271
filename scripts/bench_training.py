"""Training study (not a test): what the study's networks learn, against chance and pty-chi.

Takes a study config (default ``configs/demo.yaml``: its test scan, dose, probe, networks and
compare settings), simulates its test scan once, reconstructs it once with pty-chi (its
``reconstruct`` section, without half sets), and then, for every combination of the options
below, simulates a training set, trains the networks and scores them on the test scan with
compare-models' own scoring (``run_compare``, registration skipped as in the sweep: every arm
is placed in the ground-truth frame exactly). Beside them it scores

* a constant image, the truth's mean amplitude and mean phase over the scored region, through
  the same registration (gauge fit) and the same metric functions: the chance level;
* pty-chi's reconstruction (in the same comparison, so on the same region).

Arms: ``pinn`` and ``baseline`` (trained on the simulated training set), ``pinn-self`` (the
PINN trained on the test scan's own diffraction: the self-supervised protocol).

    python scripts/bench_training.py --families images mixed --n-objects 16 64 --epochs 10 20
    python scripts/bench_training.py --families mixed --n-objects 32 --seeds 0 1 2 3 4 --models pinn

Every run appends one row per arm to OUT/results.csv (metrics, training time, the training
set's size, and each image's contrast: the standard deviation of its amplitude and phase over
the region divided by the truth's, so a flat image reads 0); the table of all rows so far is
printed as markdown (docs/training-study.md holds the measured one). Timings are wall clock on
the machine at hand; ``--threads`` caps TensorFlow's threads (2 for the 2-core figures).
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

METRICS = ("ssim", "ms_ssim", "psnr", "frc50", "mae")
HIGHER_IS_BETTER = {"ssim": True, "ms_ssim": True, "psnr": True, "frc50": True, "mae": False}
FIELDS = (
    "run", "arm", "settings", "family", "n_objects", "object_size", "feature_size", "n_train", "epochs", "width",
    "batch_size", "learning_rate", "seed", "train_s", "epochs_run",
    *[f"{part}_{metric}" for part in ("amp", "phase") for metric in METRICS],
    "amp_contrast", "phase_contrast", "beats_constant",
)
NAMES = {"pinn": "PtychoPINN", "baseline": "Baseline", "ptychi": "PtyChi"}


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/demo.yaml", help="study config (sections simulate, train_pinn, train_baseline, reconstruct, compare)")
    parser.add_argument("--out", default="bench_training", help="working directory (test scan, pty-chi, runs, results.csv)")
    parser.add_argument("--families", nargs="+", default=["mixed"], help="training objects: images, lines, grf, particles, mixed")
    parser.add_argument("--n-objects", type=int, nargs="+", default=[16], help="generated training objects (ignored for images)")
    parser.add_argument("--object-size", type=int, nargs="+", default=[None], help="side of each training object, px (default: the config's train_object_size)")
    parser.add_argument("--feature-size", type=float, nargs="+", default=[None], help="generated objects' feature size, px (default N/8)")
    parser.add_argument("--epochs", type=int, nargs="+", default=[None], help="epochs (default: the config's)")
    parser.add_argument("--widths", type=int, nargs="+", default=[None], help="network width (default: the config's)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[None])
    parser.add_argument("--learning-rates", type=float, nargs="+", default=[None])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds (weights, split, shuffles)")
    parser.add_argument("--set", dest="settings", nargs="+", default=[], metavar="KEY=VALUE",
                        help="other training settings for every arm (YAML values), e.g. loss_weighting=uniform")
    parser.add_argument("--models", nargs="+", default=["pinn", "baseline"], choices=["pinn", "baseline", "pinn-self"])
    parser.add_argument("--dose", type=float, default=None, help="override the config's dose")
    parser.add_argument("--threads", type=int, default=None, help="TensorFlow intra- and inter-op threads")
    parser.add_argument("--no-ptychi", action="store_true", help="skip the pty-chi reference")
    parser.add_argument("--table-only", action="store_true", help="print the table of OUT/results.csv and stop")
    return parser.parse_args(argv)


def load_sections(path) -> dict:
    from compare_models.config import read_yaml_section

    return read_yaml_section(path)


def prepare_test(sections, args, out: Path):
    """The test scan (simulated once) and its pty-chi reconstruction (once)."""
    from compare_models.io.npz import save_dataset
    from compare_models.study.simulator import SimulationConfig, simulate_dataset

    settings = dict(sections["simulate"], split=None)
    if args.dose is not None:
        settings["dose"] = args.dose
    config = SimulationConfig(**settings).validate()
    test_path = out / "test.npz"
    stamp = out / "test_config.json"
    if not (test_path.exists() and stamp.exists() and json.loads(stamp.read_text()) == config.to_dict()):
        save_dataset(simulate_dataset(config), test_path)
        stamp.write_text(json.dumps(config.to_dict()))
    ptychi = None
    if not args.no_ptychi:
        from compare_models.pipelines.reconstruct import run_reconstruct
        from compare_models.study.ptychi_runner import ReconstructConfig

        ptychi_dir = out / "ptychi"
        ptychi = ptychi_dir / "ptychi_reconstruction.npz"
        if not ptychi.exists():
            recon = ReconstructConfig(**{**sections.get("reconstruct", {}), "half_sets": False}).validate()
            started = time.perf_counter()
            run_reconstruct(test_path, ptychi_dir, recon, progress=False)
            print(f"pty-chi: {time.perf_counter() - started:.0f} s", flush=True)
    return config, test_path, ptychi


def training_set(test_config, sections, family, n_objects, object_size, feature, out: Path) -> Path:
    from compare_models.io.npz import save_dataset
    from compare_models.study.simulator import SimulationConfig, simulate_split

    base = {**sections["simulate"], **{k: v for k, v in test_config.to_dict().items() if k == "dose"}}
    changes = {"split": "objects", "train_objects": family}
    if family != "images":
        changes["n_train_objects"] = n_objects
        changes["train_feature_size"] = feature
    if object_size is not None:
        changes["train_object_size"] = object_size
    config = SimulationConfig(**{**base, **changes}).validate()
    key = f"train_{family}_{n_objects if family != 'images' else 1}_{config.resolved_train_object_size}_{feature}"
    path = out / "data" / f"{key}.npz"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        train, _ = simulate_split(config)
        save_dataset(train, path)
    return path


def train_arm(arm, sections, data_path, overrides, run_dir: Path):
    from compare_models.config import build_config
    from compare_models.models.training import TrainConfig
    from compare_models.pipelines.train import run_train

    section = sections["train_baseline" if arm == "baseline" else "train_pinn"]
    settings = {**section, **{k: v for k, v in overrides.items() if v is not None}}
    settings["model"] = "baseline" if arm == "baseline" else "pinn"
    # The arm names the protocol, whatever the config's section says.
    settings["train_on"] = "test-diffraction" if arm == "pinn-self" else "training-set"
    config = build_config(TrainConfig, settings, where=f"bench {arm}")
    started = time.perf_counter()
    bundle, result = run_train(config, data_path, run_dir / arm, progress=False)
    return bundle, time.perf_counter() - started, config, len(result.history["loss"])


def score(test_path, arms: dict, ptychi, sections, out_dir: Path):
    """compare-models on the test scan; returns (metrics.json, constant image's metrics,
    per-arm contrast)."""
    from compare_models.io.dispatch import load_dataset
    from compare_models.pipelines.compare import CompareConfig, run_compare

    compare = {k: v for k, v in (sections.get("compare") or {}).items()}
    compare.update(
        test_data=str(test_path), output_dir=str(out_dir), overwrite=True, progress=False, half_sets=False,
        skip_registration=True, pinn_dir=arms.get("pinn"), baseline_dir=arms.get("baseline"),
        ptychi_recon_path=None if ptychi is None else str(ptychi),
    )
    config = CompareConfig(**{k: (str(v) if isinstance(v, Path) else v) for k, v in compare.items()}).validate()
    run_compare(config, echo=lambda _: None)
    document = json.loads((out_dir / "metrics.json").read_text())
    truth = load_dataset(test_path).object_truth
    with np.load(out_dir / "reconstructions.npz") as stored:
        region = stored["scored_region"]
    with np.load(out_dir / "reconstructions.npz") as stitched:
        contrast = {name: image_contrast(stitched[f"{name.lower()}_complex"], truth, region) for name in document["models"]}
    return document, constant_metrics(truth, region, config), contrast


def constant_metrics(truth, region, config) -> dict:
    """The chance level: the truth's mean amplitude and phase over the region, through the same
    registration (gauge fit) and :func:`compute_metrics`. A component that stays flat after the
    gauge (the amplitude always) has no power at any non-zero frequency, so its FRC is undefined
    and compute_metrics refuses it; that component's other metrics are computed by the same
    public functions on the same region and its ``frc50`` is 0 (it resolves nothing)."""
    from compare_models.errors import MetricError
    from compare_models.imaging import metrics as m
    from compare_models.imaging.geometry import mask_bbox
    from compare_models.imaging.registration import register

    amplitude = float(np.abs(truth[region]).mean())
    phase = float(np.angle(truth[region]).mean())
    image = np.full(truth.shape, amplitude * np.exp(1j * phase), np.complex64)
    aligned = register(image, truth, region, shift_yx=None, estimate_shift=False,
                       phase_align=config.phase_align_method).aligned
    try:
        return m.compute_metrics(aligned, truth, region, ms_ssim_sigma=config.ms_ssim_sigma, frc_sigma=config.frc_sigma)
    except MetricError:
        pass
    box = mask_bbox(region)
    mask = region[box]
    rec, ref = aligned[box].astype(np.complex128), truth[box].astype(np.complex128)
    phase_t = np.angle(ref)
    parts = {"amplitude": (np.abs(rec), np.abs(ref)), "phase": (phase_t + np.angle(rec * np.conj(ref)), phase_t)}
    out = {}
    for name, (test, reference) in parts.items():
        span, _ = m.data_range(reference[mask])
        fill = float(reference[mask].mean())
        test_f, ref_f = np.where(mask, test, fill), np.where(mask, reference, fill)
        try:
            ring = m.frc_on_region(test, reference, mask, smoothing_sigma=config.frc_sigma)
            frc50 = ring.cutoffs[m.FRC_AGAINST_TRUTH_THRESHOLD]["fraction_nyquist"]
        except MetricError:  # flat: no power at any non-zero frequency
            frc50 = 0.0
        out[name] = {
            "mae": m.mae(test[mask][None], reference[mask][None]),
            "psnr": m.psnr(reference[mask][None], test[mask][None], span),
            "ssim": m.ssim(ref_f, test_f, span, mask=mask),
            "ms_ssim": m.ms_ssim(ref_f, test_f, span).value,
            "frc50": frc50,
        }
    return out


def image_contrast(image, truth, region) -> tuple[float, float]:
    """Standard deviation of the stitched image's amplitude (over its mean) and phase (about its
    mean phasor, so no wrap) over the region, each over the truth's: 0 for a flat image, about 1
    for one with the truth's contrast. Before any gauge fit, so a fitted ramp adds nothing."""
    def spread(values):
        amplitude = np.abs(values)
        phase = np.angle(values * np.exp(-1j * np.angle(values.mean())))
        return amplitude.std() / amplitude.mean(), phase.std()

    (amp, phase), (amp_t, phase_t) = spread(image[region]), spread(truth[region])
    return float(amp / amp_t), float(phase / phase_t)


def metric_values(metrics) -> dict:
    return {f"{short}_{m}": float(metrics[part][m]) for short, part in (("amp", "amplitude"), ("phase", "phase"))
            for m in METRICS}


def beats(values: dict, constant: dict) -> bool:
    for key, value in values.items():
        metric = key.split("_", 1)[1]
        better = value > constant[key] if HIGHER_IS_BETTER[metric] else value < constant[key]
        if not better:
            return False
    return True


def append_rows(path: Path, rows) -> None:
    if path.exists():
        with path.open() as handle:
            reader = csv.DictReader(handle)
            if tuple(reader.fieldnames or ()) != FIELDS:  # written by an older version: rewrite
                rows = [*list(reader), *rows]
                path.unlink()
    new = not path.exists()
    with path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        if new:
            writer.writeheader()
        for row in rows:
            writer.writerow({k: row.get(k, "") for k in FIELDS})


def markdown_table(path: Path) -> str:
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    # Rows written before a column existed read it as missing.
    rows = [{k: ("" if v is None else v) for k, v in row.items()} for row in rows]
    columns = ("arm", "family", "n_objects", "n_train", "epochs", "width", "batch_size", "learning_rate", "settings",
               "seed", "train_s", "amp_ssim", "amp_ms_ssim",
               "amp_frc50", "phase_ssim", "phase_ms_ssim", "phase_psnr", "phase_frc50", "amp_contrast",
               "phase_contrast", "beats_constant")
    seen, lines = set(), []
    lines.append("| " + " | ".join(columns) + " |")
    lines.append("|" + "---|" * len(columns))
    for row in rows:
        if row["arm"] in ("Constant", "PtyChi"):
            if row["arm"] in seen:
                continue
            seen.add(row["arm"])
        cells = []
        for column in columns:
            value = row.get(column, "")
            try:
                number = float(value)
                value = f"{number:.3g}" if not number.is_integer() or abs(number) < 1 else str(int(number))
            except ValueError:
                pass
            cells.append(value)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = out / "results.csv"
    if args.table_only:
        print(markdown_table(results))
        return 0
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")  # one tf.function per training run: retracing is expected
    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    sections = load_sections(args.config)
    test_config, test_path, ptychi = prepare_test(sections, args, out)
    grid = itertools.product(args.families, args.n_objects, args.object_size, args.feature_size, args.epochs,
                             args.widths, args.batch_sizes, args.learning_rates, args.seeds)
    import yaml

    from compare_models.io.dispatch import load_dataset

    extra = {key: yaml.safe_load(value) for key, value in (item.split("=", 1) for item in args.settings)}
    for family, n_objects, object_size, feature, epochs, width, batch, lr, seed in grid:
        data_path = training_set(test_config, sections, family, n_objects, object_size, feature, out)
        n_train = load_dataset(data_path).n_positions
        name = f"{family}-k{n_objects if family != 'images' else 1}-s{object_size}-f{feature}-e{epochs}-w{width}-b{batch}-lr{lr}-seed{seed}"
        name += "".join(f"-{k}={v}" for k, v in sorted(extra.items())) + "-" + "+".join(args.models)
        run_dir = out / "runs" / name
        overrides = {**extra, "epochs": epochs, "width": width, "batch_size": batch, "learning_rate": lr, "seed": seed}
        trained, rows = {}, []
        for arm in args.models:
            source = test_path if arm == "pinn-self" else data_path
            bundle, seconds, config, epochs_run = train_arm(arm, sections, source, overrides, run_dir)
            trained[arm] = (bundle, seconds, config, epochs_run)
            print(f"{name} {arm}: trained in {seconds:.0f} s", flush=True)
        comparisons = []
        networks = {k: v[0] for k, v in trained.items() if k in ("pinn", "baseline")}
        if networks:
            comparisons.append((networks, {"pinn": "pinn", "baseline": "baseline"}))
        if "pinn-self" in trained:
            comparisons.append(({"pinn": trained["pinn-self"][0]}, {"pinn": "pinn-self"}))
        for number, (arms, labels) in enumerate(comparisons):
            document, constant, contrast = score(test_path, arms, ptychi, sections, run_dir / f"compare{number}")
            constant_values = metric_values(constant)
            common = dict(run=name, settings=" ".join(f"{k}={v}" for k, v in sorted(extra.items())), family=family, n_objects=n_objects if family != "images" else 1,
                          object_size=object_size, feature_size=feature, n_train=n_train, seed=seed)
            for key, label in labels.items():
                if key not in arms:
                    continue
                _, seconds, config, epochs_run = trained[label]
                values = metric_values(document["models"][NAMES[key]]["metrics"])
                amp_c, phase_c = contrast[NAMES[key]]
                rows.append({**common, "arm": label, "epochs": config.epochs, "width": config.width,
                             "batch_size": config.batch_size, "learning_rate": config.learning_rate,
                             "train_s": round(seconds, 1), "epochs_run": epochs_run, **values,
                             "amp_contrast": amp_c, "phase_contrast": phase_c,
                             "beats_constant": beats(values, constant_values)})
            rows.append({**common, "arm": "Constant", **constant_values, "amp_contrast": 0.0, "phase_contrast": 0.0})
            if ptychi is not None and "PtyChi" in document["models"]:
                values = metric_values(document["models"]["PtyChi"]["metrics"])
                amp_c, phase_c = contrast["PtyChi"]
                rows.append({**common, "arm": "PtyChi", **values, "amp_contrast": amp_c, "phase_contrast": phase_c,
                             "beats_constant": beats(values, constant_values)})
        append_rows(results, rows)
        for row in rows:
            if row["arm"] not in ("Constant", "PtyChi"):
                print(f"  {row['arm']}: amp ssim {row['amp_ssim']:.3f} ms-ssim {row['amp_ms_ssim']:.3f} frc50 "
                      f"{row['amp_frc50']:.3f} | phase ssim {row['phase_ssim']:.3f} ms-ssim {row['phase_ms_ssim']:.3f} "
                      f"frc50 {row['phase_frc50']:.3f} | contrast {row['amp_contrast']:.2f}/{row['phase_contrast']:.2f}"
                      f" | beats constant: {row['beats_constant']}", flush=True)
    print(markdown_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())

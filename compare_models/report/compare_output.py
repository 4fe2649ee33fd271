"""The one writer of a comparison's output directory.

:func:`write_comparison` builds every document from the run's records
(:mod:`compare_models.report.documents`) and writes them: the images (NPZ), the comparison and
FRC figures, ``comparison_metrics.csv``, ``frc_curves.csv``, ``metrics.json``, the ptychodus
products, ``provenance.json`` and ``report.html``. Whether the directory is complete or
failed is :mod:`compare_models.report.staging`'s job.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from .documents import (
    frc_curves,
    image_key,
    image_sets,
    metric_rows,
    metrics_document,
    provenance_document,
)
from .records import Comparison

__all__ = ["write_comparison"]


def write_comparison(
    directory, comparison: Comparison, dataset, config, *, seen_in_training: Mapping, timings_s: Mapping
) -> dict:
    """Write every file of a comparison into ``directory``.

    Parameters
    ----------
    directory : path
        The (staged) output directory.
    comparison : Comparison
    dataset : compare_models.io.dataset.Dataset
        The test data (ground truth, probe, positions, dose, metadata).
    config : CompareConfig
        The run's settings (recorded in provenance.json).
    seen_in_training : mapping
        Per network arm, the fraction of the scored region seen in training.
    timings_s : mapping
        Stage -> seconds, for provenance.json.

    Returns
    -------
    dict
        The metrics.json document, JSON-ready.
    """
    from . import writers
    from .html import write_compare_report

    directory = Path(directory)
    truth = dataset.object_truth
    _write_images(directory, comparison, dataset)
    rows = metric_rows(comparison.truth, comparison.half_sets)
    if rows:
        writers.write_metrics_csv(rows, directory / "comparison_metrics.csv")
    curves = frc_curves(comparison.truth, comparison.half_sets)
    if curves:
        writers.write_frc_csv(curves, directory / "frc_curves.csv")
        writers.plot_frc(curves, directory / "frc.png")
    metrics_doc = metrics_document(
        comparison, config, ground_truth=truth is not None, seen_in_training=seen_in_training
    )
    writers.write_json(metrics_doc, directory / "metrics.json")
    _write_products(directory / "products", comparison, dataset, config)
    provenance = provenance_document(
        comparison, dataset, config, inputs=_input_hashes(comparison, config),
        versions=writers.environment_versions(), metrics_doc=metrics_doc,
        seen_in_training=seen_in_training, timings_s=timings_s,
    )
    writers.write_json(provenance, directory / "provenance.json")
    write_compare_report(directory)  # report.html, from the files written above
    return writers.to_jsonable(metrics_doc)


def _write_images(directory: Path, comparison: Comparison, dataset) -> None:
    """reconstructions.npz (with the masks), reconstructions_aligned.npz and comparison.png."""
    from . import writers

    truth = dataset.object_truth
    stitched, aligned, masks = image_sets(comparison, truth)
    writers.write_images_npz(stitched, directory / "reconstructions.npz", masks=masks)
    writers.write_images_npz(aligned, directory / "reconstructions_aligned.npz")
    dose = (
        f"measured dose {dataset.measured_dose:.3g} photons/pattern" if dataset.diffraction_in_counts
        else "data not in photon counts: no measured dose"
    )
    title = f"{dataset.n_positions} positions, {dose}"
    writers.plot_comparison(
        comparison.truth.aligned, truth, comparison.truth.region, directory / "comparison.png", title=title
    )


def _write_products(products: Path, comparison: Comparison, dataset, config) -> None:
    """Ptychodus products, so the images open in the facility's viewer."""
    from ..io.ptychodus import write_product

    products.mkdir()
    physics = {
        "pixel_size_m": config.pixel_size_m or dataset.pixel_size_m,
        "photon_energy_eV": dataset.metadata.get("photon_energy_eV"),
        "detector_object_distance_m": dataset.metadata.get("detector_object_distance_m"),
    }
    for arm in comparison.arms:
        write_product(
            products / f"{image_key(arm.name)}_product.h5", arm.image, probe=dataset.probe,
            positions_xy=dataset.positions_xy, name=arm.name, comments="compare-models stitched image", **physics,
        )
    truth = dataset.object_truth
    if truth is not None:
        write_product(
            products / "ground_truth_product.h5", truth, probe=dataset.probe, positions_xy=dataset.positions_xy,
            name="ground truth", comments="objectGuess of the test data", object_role="ground_truth", **physics,
        )


def _input_hashes(comparison: Comparison, config) -> dict:
    """provenance.json's ``inputs``: every input file's path and SHA-256."""
    from .writers import file_sha256

    arms = comparison.arms
    return {
        "test_data": {"path": config.test_data, "sha256": file_sha256(config.test_data)},
        **{
            arm.key: {
                "path": str(arm.details.get("bundle") or arm.details.get("path")),
                "sha256": file_sha256(arm.details.get("bundle") or arm.details.get("path")),
            }
            for arm in arms
        },
        **{
            f"ptychi_half{number}": {"path": entry["path"], "sha256": file_sha256(entry["path"])}
            for arm in arms
            if arm.key == "ptychi" and arm.halves is not None
            for number, entry in enumerate(arm.halves.details["files"], start=1)
        },
    }

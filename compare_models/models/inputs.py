"""Network inputs built from a dataset, a batch of indices at a time (arrays in, arrays out).

* Normalised amplitude: measured amplitude divided by the dataset's *intensity scale*
  ``s = sqrt(mean counts per pixel)`` so inputs are O(1). The scale of the training data is
  stored in the bundle and applied unchanged at inference.
* Groups (gridsize g, C = g²): :func:`compare_models.models.grouping.group_neighbours`, one group per
  scan position with the seed first. Offsets are each member's position minus the group centre
  (the mean of the members' positions), (x, y) in object pixels.
* Region margin (PINN): the members of a group must lie within the model's margin ``pad`` of
  their centre. Training derives it from the training scan (:func:`region_pad_for`) and the
  bundle records it; at inference, a group that reaches beyond the bundle's margin is re-formed
  from the seed's nearest neighbours to fit (:func:`compare_models.models.grouping.fit_groups`).
"""

from __future__ import annotations

import logging
import math

import numpy as np

from ..errors import DatasetError
from .grouping import GroupFitError, centred_spread, fit_groups, group_neighbours

log = logging.getLogger("compare_models.inputs")

__all__ = [
    "intensity_scale",
    "make_groups",
    "region_pad_for",
    "group_offsets_centred",
    "pinn_inputs",
    "group_counts",
    "baseline_inputs",
]


def intensity_scale(amplitude) -> float:
    """``sqrt(mean(amplitude²))``: root of the mean count per detector pixel (photons).

    An in-memory array is reduced at once; a lazy one (:mod:`compare_models.io.lazy`) by one
    pass over row chunks (the same value to float64 rounding).
    """
    if isinstance(amplitude, np.ndarray):
        value = float(np.sqrt(np.mean(np.square(amplitude, dtype=np.float64))))
    else:
        from ..io.lazy import iter_chunks

        total = 0.0
        for _, chunk in iter_chunks(amplitude):
            total += float(np.square(chunk, dtype=np.float64).sum())
        value = float(np.sqrt(total / max(int(np.prod(amplitude.shape)), 1)))
    if not value > 0:
        raise DatasetError("diffraction amplitudes are all zero; cannot normalise the inputs")
    return value


def make_groups(
    positions_xy, gridsize: int, *, n_neighbours: int | None = None, seed: int = 0, max_offset: float | None = None
) -> np.ndarray:
    """(M, C) member indices, seed first (see :func:`compare_models.models.grouping.group_neighbours`).

    With ``max_offset`` (the model's region margin, pixels), groups whose members reach farther
    from their centre are re-formed to fit (:func:`compare_models.models.grouping.fit_groups`);
    when none can, a :class:`DatasetError` names the position and the fix.
    """
    try:
        groups = group_neighbours(positions_xy, gridsize, n_candidates=n_neighbours, seed=seed)
        if max_offset is not None:
            groups, changed = fit_groups(positions_xy, groups, max_offset)
            if changed:
                log.info("%d of %d groups re-formed to fit the region margin of %g px", changed, len(groups), max_offset)
    except GroupFitError as exc:
        raise DatasetError(
            f"{exc}; the model's region margin is too small for this scan: use a denser scan, or "
            "train with a larger region_pad"
        ) from exc
    except ValueError as exc:
        raise DatasetError(str(exc)) from exc
    return groups


def region_pad_for(positions_xy, patch_size: int, gridsize: int, *, n_neighbours: int | None = None,
                   seed: int = 0) -> tuple[int, str]:
    """The PINN's region margin for a training scan, and how it was found.

    ``max(N/4, ceil(spread))`` pixels, at most ``N/2``, where ``spread`` is the largest offset
    of a member from its group's centre over the scan's nearest-neighbour groups
    (:func:`compare_models.models.grouping.centred_spread`). So every natural group of the
    training scan fits; beyond ``N/2`` (members that barely overlap the centre patch), the
    groups that do not fit are re-formed instead (:func:`make_groups` with ``max_offset``).

    Returns
    -------
    (int, str)
        The margin in pixels and a sentence for the bundle (``region_pad_rule``).
    """
    base, cap = patch_size // 4, patch_size // 2
    if gridsize == 1:
        return base, "N/4 (gridsize 1: a group is one pattern, no offsets)"
    groups = make_groups(positions_xy, gridsize, n_neighbours=n_neighbours, seed=seed)
    spread = float(centred_spread(positions_xy, groups).max()) if len(groups) else 0.0
    needed = math.ceil(spread - 1e-9)
    pad = min(max(base, needed), cap)
    if needed <= base:
        rule = f"N/4: the training scan's groups spread at most {spread:.2f} px"
    elif needed <= cap:
        rule = f"derived from the training scan: its groups spread up to {spread:.2f} px (N/4 = {base})"
    else:
        rule = f"N/2 (the cap): the training scan's groups spread up to {spread:.2f} px; wider groups re-formed"
    return pad, rule


def group_offsets_centred(positions_xy, groups) -> np.ndarray:
    """Offsets (M, C, 2) float64 of each member from its group's mean position, (x, y) px."""
    members = np.asarray(positions_xy, dtype=np.float64)[groups]
    return members - members.mean(axis=1, keepdims=True)


def pinn_inputs(amplitude, positions_xy, groups, indices, scale: float):
    """Inputs of the PINN for the groups ``indices``.

    ``amplitude`` may be an ndarray or a lazy array (:mod:`compare_models.io.lazy`): only the
    members' rows are read.

    Returns
    -------
    x : ndarray (n, N, N, C) float32
        Member amplitudes divided by ``scale``; channel c is member c (seed first).
    offsets : ndarray (n, C, 2) float32
        Offsets from the group centre, (x, y) object pixels.
    """
    members = groups[indices]
    # Channels last in memory first, then one division: C-contiguous, as a device copy needs
    # (2x faster than dividing the strided view and copying it for the device; same values).
    x = np.ascontiguousarray(np.moveaxis(amplitude[members], 1, -1)) / np.float32(scale)
    offsets = group_offsets_centred(positions_xy, members)
    return x.astype(np.float32, copy=False), offsets.astype(np.float32)


def group_counts(amplitude, groups, indices) -> np.ndarray:
    """Measured counts (amplitude²) of the groups ``indices``, (n, N, N, C) float32."""
    members = groups[indices]
    return np.square(np.moveaxis(amplitude[members], 1, -1)).astype(np.float32)


def baseline_inputs(amplitude, indices, scale: float) -> np.ndarray:
    """Inputs of the baseline, (n, N, N, 1) float32: amplitudes divided by ``scale``."""
    return (amplitude[indices][..., None] / np.float32(scale)).astype(np.float32)

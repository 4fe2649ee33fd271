"""The ``Dataset`` type and its validation: the in-memory form of a ptychographic scan.

Every reader in :mod:`compare_models.io` returns a ``Dataset``; every consumer takes one.

Frames and units (docs/design.md, "Frames and units")
------------------------------------------------
* Positions are in object pixels: x is the column, y the row. A patch of size N centred at
  (x, y) covers rows ``y - N/2 .. y + N/2 - 1`` and columns ``x - N/2 .. x + N/2 - 1``; patch
  pixel (N/2, N/2) sits on object pixel (y, x).
* Diffraction is stored as amplitude (square root of counts), float32, shape (M, N, N), with
  the zero frequency at pixel (N/2, N/2).
* Dose is measured: :attr:`Dataset.measured_dose` is the mean number of counts per pattern.

Large inputs
------------
``diffraction_amplitude`` and ``patches_truth`` may be lazy arrays
(:class:`compare_models.io.lazy.LazyRows`) that read rows from the file on demand. Everything
here (validation, dose, the counts check, the fingerprint, :meth:`Dataset.subset`) reads them
chunk by chunk (:func:`compare_models.io.lazy.iter_chunks`), so a dataset costs memory for its
small arrays only. Consumers index rows (``amplitude[indices]``) and never take the whole.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import warnings
from dataclasses import dataclass, field

import numpy as np

from ..errors import DatasetError
from .lazy import LazyRows, RowView, is_lazy, iter_chunks

__all__ = [
    "Dataset",
    "validate_dataset",
    "patches_for_positions",
    "patch_bounds_ok",
    "dataset_fingerprint",
    "diffraction_counts_check",
    "object_fingerprint",
    "pattern_counts",
]

# Tolerance for positions on the boundary of the object (float rounding of stored coordinates).
_POSITION_TOLERANCE_PX = 1e-6


@dataclass(frozen=True, eq=False)
class Dataset:
    """A validated ptychographic scan.

    Attributes
    ----------
    diffraction_amplitude : ndarray or LazyRows, (M, N, N) float32
        Measured far-field amplitudes (square root of counts), zero frequency at (N/2, N/2).
        Lazy when read from a file (index it by rows; ``np.asarray`` materialises it).
    positions_xy : ndarray, (M, 2) float64
        Patch centres in object pixels, column ``x`` then row ``y``.
    probe : ndarray, (N, N) complex64
        Illumination in the sample plane.
    object_truth : ndarray, (H, W) complex64, or None
        Ground-truth object on the pixel grid the positions refer to.
    patches_truth : ndarray or LazyRows, (M, N, N) complex64, or None
        Ground-truth object patches (the ``Y`` key); lazy when read from a file. Patches that
        are not one per position (another first axis, such as the single (1, N, N, 1) patch
        PtychoPINN's ``generate_patches_tool.py`` writes) are dropped with a warning
        (:func:`patches_for_positions`).
    positions_start_xy : ndarray, (M, 2) float64
        Nominal positions (``xcoords_start``/``ycoords_start``); equal to ``positions_xy``
        when the file does not carry them.
    scan_index : ndarray, (M,) int64, or None
    metadata : dict
        JSON-decoded ``_metadata`` (dose, seed, provenance), empty when absent.
    source : str or None
        Path the dataset was loaded from, for error messages and provenance.
    """

    diffraction_amplitude: np.ndarray
    positions_xy: np.ndarray
    probe: np.ndarray
    object_truth: np.ndarray | None = None
    patches_truth: np.ndarray | None = None
    positions_start_xy: np.ndarray | None = None
    scan_index: np.ndarray | None = None
    metadata: dict = field(default_factory=dict)
    source: str | None = None

    def __post_init__(self):
        diffraction_shape = getattr(self.diffraction_amplitude, "shape", ())
        patches = self.patches_truth
        if len(diffraction_shape) >= 1:  # a malformed diffraction is validate_dataset's to name
            patches = patches_for_positions(patches, int(diffraction_shape[0]), source=self.source)
        if patches is not self.patches_truth:
            object.__setattr__(self, "patches_truth", patches)
        validate_dataset(self)
        if self.positions_start_xy is None:
            object.__setattr__(self, "positions_start_xy", self.positions_xy.copy())

    @property
    def n_positions(self) -> int:
        """Number of scan positions M."""
        return int(self.diffraction_amplitude.shape[0])

    @property
    def patch_size(self) -> int:
        """Pattern and probe side N in pixels."""
        return int(self.diffraction_amplitude.shape[1])

    @functools.cached_property
    def measured_dose(self) -> float:
        """Mean photon count per pattern, computed from the amplitudes (counts = amplitude²).

        One chunked pass over the patterns, remembered.
        """
        return float(pattern_counts(self.diffraction_amplitude).mean())

    @property
    def nominal_dose(self) -> float | None:
        """The dose the generator was asked for, if the metadata records one.

        This project's files record ``dose_nominal``; PtychoPINN's simulator records
        ``physics_parameters.nphotons``.
        """
        value = self.metadata.get("dose_nominal")
        if value is None:
            physics = self.metadata.get("physics_parameters")
            value = physics.get("nphotons") if isinstance(physics, dict) else None
        try:
            return None if value is None else float(value)
        except (TypeError, ValueError):
            return None

    @functools.cached_property
    def _counts_check(self) -> tuple[bool, str]:
        return diffraction_counts_check(self.diffraction_amplitude, self.metadata)

    @property
    def diffraction_in_counts(self) -> bool:
        """Whether amplitude² are photon counts (or expected counts), so that
        :attr:`measured_dose` means photons; see :func:`diffraction_counts_check`."""
        return self._counts_check[0]

    @property
    def diffraction_units(self) -> str:
        """What amplitude² are, with the evidence (see :func:`diffraction_counts_check`)."""
        return self._counts_check[1]

    @property
    def dose_summary(self) -> str:
        """One phrase for logs and summaries: the measured dose, or that there is none because
        the data are not in counts; the nominal dose beside it when recorded."""
        nominal = self.nominal_dose
        if self.diffraction_in_counts:
            text = f"measured dose {self.measured_dose:.4g} photons/pattern"
            return text + (f" (nominal {nominal:.4g})" if nominal is not None else "")
        text = f"dose not measurable: the diffraction data are not in photon counts ({self.diffraction_units})"
        return text + (f"; nominal dose {nominal:.4g} photons/pattern (metadata)" if nominal is not None else "")

    @property
    def pixel_size_m(self) -> float | None:
        """Object pixel size in metres, if the metadata records one."""
        value = self.metadata.get("pixel_size_m")
        return None if value is None else float(value)

    def subset(self, indices) -> Dataset:
        """Return the dataset restricted to the scan positions ``indices`` (in that order).

        Lazy patterns and patches stay lazy: the subset is an index map over the same file
        (:class:`~compare_models.io.lazy.RowView`), nothing is read or copied; its values are
        not scanned again when the parent's were. In-memory arrays are indexed (copied).
        """
        indices = np.asarray(indices, dtype=np.int64)
        if indices.ndim != 1:
            raise DatasetError("subset indices must be a 1-D integer array")
        m = self.n_positions
        if indices.size and (indices.min() < -m or indices.max() >= m):
            raise DatasetError(f"subset indices must lie in [0, {m}), got {int(indices.min())}..{int(indices.max())}")

        def pick(array):
            if array is None:
                return None
            return RowView(array, indices) if is_lazy(array) else array[indices]

        return dataclasses.replace(
            self,
            diffraction_amplitude=pick(self.diffraction_amplitude),
            positions_xy=self.positions_xy[indices],
            positions_start_xy=pick(self.positions_start_xy),
            patches_truth=pick(self.patches_truth),
            scan_index=pick(self.scan_index),
            metadata=dict(self.metadata),
        )


def _where(dataset_or_source) -> str:
    source = getattr(dataset_or_source, "source", dataset_or_source)
    return f"{source}: " if source else ""


def patch_bounds_ok(positions_xy, patch_size: int, object_shape) -> np.ndarray:
    """True for each position whose N x N patch lies inside an object of ``object_shape``.

    A patch centred at (x, y) needs columns ``x - N/2 .. x + N/2 - 1`` (rounded outward for
    sub-pixel positions, which interpolation reads on both sides).
    """
    positions_xy = np.asarray(positions_xy, dtype=np.float64)
    height, width = object_shape
    half = patch_size / 2
    low = positions_xy - half
    high = positions_xy + half - 1
    tol = _POSITION_TOLERANCE_PX
    inside_x = (low[:, 0] >= -tol) & (np.ceil(high[:, 0] - tol) <= width - 1)
    inside_y = (low[:, 1] >= -tol) & (np.ceil(high[:, 1] - tol) <= height - 1)
    return inside_x & inside_y


def patches_for_positions(patches, n_positions: int, *, source=None):
    """``patches`` when they hold one row per scan position, else None with a warning.

    Parameters
    ----------
    patches : ndarray or LazyRows, (K, ...), or None
        Ground-truth patches as read (the ``Y`` key).
    n_positions : int
        M, the number of scan positions (diffraction patterns).
    source : str, optional
        The file, for the warning.

    Returns
    -------
    ndarray or LazyRows or None
        ``patches`` unchanged when ``K == M`` (their shape is then checked by
        :func:`validate_dataset`: a wrong patch shape is an error); None when ``K != M``.

    Notes
    -----
    PtychoPINN's ``generate_patches_tool.py`` with its defaults (``nsamples=1``) writes a ``Y``
    of shape (1, N, N, 1): patches of sampled groups, not one per position. PtychoPINN's own
    loader (``ptycho.workflows.components.load_data``) ignores a ``Y`` whose first axis is not
    the number of positions, with a warning; so does this one. Nothing needs ``Y``: scoring
    uses ``objectGuess``, and training cuts the patches from it when ``Y`` is absent.
    """
    if patches is None:
        return None
    shape = tuple(getattr(patches, "shape", ()))
    if not shape or shape[0] == n_positions:
        return patches
    where = f"{source}: " if source else ""
    warnings.warn(
        f"{where}key 'Y' holds {shape[0]} patch{'es' if shape[0] != 1 else ''} of shape "
        f"{shape[1:]} for {n_positions} scan positions, not one per position (as PtychoPINN's "
        "generate_patches_tool.py writes); ignored, as PtychoPINN's loader ignores it",
        UserWarning,
        stacklevel=4,
    )
    return None


def validate_dataset(dataset: Dataset) -> None:
    """Check shapes, dtypes, finiteness and geometry; raise :class:`DatasetError` if broken."""
    where = _where(dataset)
    diff = dataset.diffraction_amplitude
    if not isinstance(diff, (np.ndarray, LazyRows)) or diff.ndim != 3 or diff.shape[1] != diff.shape[2]:
        raise DatasetError(
            f"{where}key 'diffraction': expected amplitudes of shape (M, N, N), got "
            f"{getattr(diff, 'shape', type(diff).__name__)}"
        )
    m, n = diff.shape[0], diff.shape[1]
    if m == 0:
        raise DatasetError(f"{where}key 'diffraction': no diffraction patterns (M = 0)")
    _check_amplitude_values(diff, where)
    pos = dataset.positions_xy
    if not isinstance(pos, np.ndarray) or pos.shape != (m, 2):
        raise DatasetError(
            f"{where}keys 'xcoords'/'ycoords': expected {m} positions (one per pattern), got "
            f"shape {getattr(pos, 'shape', None)}"
        )
    if not np.isfinite(pos).all():
        raise DatasetError(f"{where}keys 'xcoords'/'ycoords': contain NaN or infinite values")
    if dataset.positions_start_xy is not None and dataset.positions_start_xy.shape != (m, 2):
        raise DatasetError(
            f"{where}keys 'xcoords_start'/'ycoords_start': expected {m} positions, got "
            f"shape {dataset.positions_start_xy.shape}"
        )
    probe = dataset.probe
    if not isinstance(probe, np.ndarray) or probe.ndim != 2:
        raise DatasetError(
            f"{where}key 'probeGuess': expected a 2-D (N, N) complex array, got shape "
            f"{getattr(probe, 'shape', None)}"
        )
    if probe.shape != (n, n):
        raise DatasetError(
            f"{where}key 'probeGuess': shape {probe.shape} does not match the diffraction "
            f"patterns' N = {n}; expected ({n}, {n})"
        )
    if not np.isfinite(probe).all():
        raise DatasetError(f"{where}key 'probeGuess': contains NaN or infinite values")
    obj = dataset.object_truth
    if obj is not None:
        if obj.ndim != 2:
            raise DatasetError(
                f"{where}key 'objectGuess': expected a 2-D (H, W) complex array, got shape "
                f"{obj.shape}"
            )
        if not np.isfinite(obj).all():
            raise DatasetError(f"{where}key 'objectGuess': contains NaN or infinite values")
        inside = patch_bounds_ok(pos, n, obj.shape)
        if not inside.all():
            bad = int(np.flatnonzero(~inside)[0])
            raise DatasetError(
                f"{where}keys 'xcoords'/'ycoords': the {n}x{n} patch at position {bad} "
                f"(x={pos[bad, 0]:g}, y={pos[bad, 1]:g}) leaves the object of shape "
                f"{obj.shape}; expected N/2 <= x <= W - N/2 and N/2 <= y <= H - N/2 "
                f"({int((~inside).sum())} positions out of bounds)"
            )
    patches = dataset.patches_truth
    if patches is not None and tuple(patches.shape) != (m, n, n):
        raise DatasetError(
            f"{where}key 'Y': expected ground-truth patches of shape {(m, n, n)}, got "
            f"{tuple(patches.shape)}"
        )
    if dataset.scan_index is not None and dataset.scan_index.shape != (m,):
        raise DatasetError(
            f"{where}key 'scan_index': expected shape ({m},), got {dataset.scan_index.shape}"
        )


def _check_amplitude_values(diff, where: str) -> None:
    """Finite and non-negative, chunk by chunk; the error names the first bad position."""
    if getattr(diff, "values_checked", False):
        return
    key = "'diffraction'"
    if is_lazy(diff) and diff.key and diff.key not in ("diffraction", "diff3d"):
        key = f"'diffraction' (read from '{diff.key}')"
    for start, chunk in iter_chunks(diff):
        finite = np.isfinite(chunk).all(axis=(1, 2))
        if not finite.all():
            bad = start + int(np.flatnonzero(~finite)[0])
            raise DatasetError(
                f"{where}key {key}: contains NaN or infinite values (first at position {bad})"
            )
        negative = (chunk < 0).any(axis=(1, 2))
        if negative.any():
            bad = start + int(np.flatnonzero(negative)[0])
            raise DatasetError(
                f"{where}key {key}: negative values (first at position {bad}); expected "
                "amplitudes (sqrt of counts) >= 0"
            )
    if is_lazy(diff):
        diff.values_checked = True


def pattern_counts(amplitude) -> np.ndarray:
    """Total counts ``sum amplitude²`` of every pattern, (M,) float64, chunk by chunk.

    The same numbers as ``np.square(amplitude, dtype=np.float64).sum(axis=(1, 2))``.
    """
    totals = np.empty(len(amplitude), dtype=np.float64)
    for start, chunk in iter_chunks(amplitude):
        totals[start : start + len(chunk)] = np.square(chunk, dtype=np.float64).sum(axis=(1, 2))
    return totals


#: A pixel's amplitude² counts as an integer within this absolute tolerance plus a relative
#: one covering float32 rounding of sqrt(count) (2 x float32 epsilon on amplitude²).
_INTEGER_ABS_TOLERANCE = 1e-3
_INTEGER_REL_TOLERANCE = 2.4e-7
#: Share of non-zero pixels that must be integer counts for the data to count as counts.
_INTEGER_FRACTION = 0.99
#: At most this many patterns (evenly spaced) are inspected.
_INSPECTED_PATTERNS = 256


def diffraction_counts_check(amplitude, metadata: dict) -> tuple[bool, str]:
    """Decide whether ``amplitude**2`` are photon counts, and say why.

    Parameters
    ----------
    amplitude : ndarray or LazyRows, (M, N, N)
        Diffraction amplitudes (only the inspected patterns are read).
    metadata : dict
        The dataset's metadata.

    Returns
    -------
    in_counts : bool
    reason : str
        What the data are and the evidence, for logs and provenance.

    Notes
    -----
    In order:

    1. ``metadata["diffraction_units"]``, when a writer records it (``"counts"`` or
       ``"expected counts"`` mean counts; anything else does not).
    2. This project's simulator (``generator == "compare_models.simulate"``) writes Poisson
       counts, or expected counts without noise: counts.
    3. PtychoPINN's simulator (``creation_info.script == "simulate_and_save.py"``) stores
       amplitudes of the exit wave before the photon scaling (its diffsim divides the noisy,
       ``nphotons``-scaled pattern by the intensity scale again): not counts.
    4. Otherwise by content: Poisson counts are integers, so in counted data amplitude² is an
       integer in (almost) every non-zero pixel, to float32 rounding. If fewer than 99 % of
       the non-zero pixels of (up to 256 evenly spaced) patterns are, the data are not counts.
    """
    units = metadata.get("diffraction_units")
    if isinstance(units, str):
        in_counts = units.strip().lower() in ("counts", "photon counts", "expected counts")
        return in_counts, f"metadata 'diffraction_units' is {units!r}"
    if metadata.get("generator") == "compare_models.simulate":
        config = metadata.get("config")
        noisy = config.get("poisson_noise", True) if isinstance(config, dict) else True
        return True, "photon counts (this project's simulator" + ("" if noisy else ", expected counts without noise") + ")"
    creation = metadata.get("creation_info")
    if isinstance(creation, dict) and creation.get("script") == "simulate_and_save.py":
        return False, (
            "PtychoPINN's simulate_and_save.py stores amplitudes of the unscaled exit wave; "
            "amplitude² are not photon counts"
        )
    step = max(1, amplitude.shape[0] // _INSPECTED_PATTERNS)
    values = np.square(np.asarray(amplitude[::step], dtype=np.float64)).ravel()
    values = values[values > 0]
    if values.size == 0:
        return True, "photon counts (every pixel is zero)"
    deviation = np.abs(values - np.round(values))
    integer = deviation <= _INTEGER_ABS_TOLERANCE + _INTEGER_REL_TOLERANCE * values
    fraction = float(integer.mean())
    if fraction >= _INTEGER_FRACTION:
        return True, "photon counts (amplitude² are integers)"
    return False, (
        f"amplitude² is not an integer in {1 - fraction:.1%} of the non-zero pixels, so it is not "
        "photon counts"
    )


def dataset_fingerprint(dataset: Dataset) -> str:
    """SHA-256 over the arrays that define a dataset (for provenance and caching).

    The diffraction is hashed chunk by chunk (its C-order bytes), so a lazy dataset and the
    same data in memory have the same fingerprint.
    """
    digest = hashlib.sha256()
    for _, chunk in iter_chunks(dataset.diffraction_amplitude):
        digest.update(np.ascontiguousarray(chunk).tobytes())
    for array in (dataset.positions_xy, dataset.probe):
        digest.update(np.ascontiguousarray(array).tobytes())
    digest.update(json.dumps(dataset.metadata, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def object_fingerprint(obj) -> str:
    """SHA-256 of a ground-truth object: its shape and its complex64 values.

    Two datasets made on the same object (the halves of a split, a file and its conversion)
    share it; another object, or the same one at another size, does not.
    """
    values = np.ascontiguousarray(np.asarray(obj), dtype=np.complex64)
    digest = hashlib.sha256(json.dumps(list(values.shape)).encode())
    digest.update(values.tobytes())
    return digest.hexdigest()

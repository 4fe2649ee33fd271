"""Read and write iterative-reconstruction files (``ptychi_reconstruction.npz``); no torch.

File contract (docs/design.md, "Contracts")
--------------------------------------
==========================  ========  ==================================================
key                         required  meaning
==========================  ========  ==================================================
``reconstructed_object``    yes       (H', W') complex object; a leading axis of length 1
                                      (pty-chi's slice axis) is accepted and dropped
``reconstructed_probe``     no        (N, N) complex probe (leading length-1 axes dropped)
``algorithm``               no        string, e.g. ``"lsqml"``
``metadata``                no        JSON object stored as a 0-d string array
==========================  ========  ==================================================

Writers, and how each file is placed on the ground-truth grid (``Reconstruction.placed_by``)
------------------------------------------------------------------------------------------
* This project (:func:`save_reconstruction`, ``ptycho-study reconstruct``): ``metadata`` records
  ``canvas_origin_xy``, the object-frame ``(ox, oy)`` of the array's pixel (0, 0):
  reconstruction pixel ``(r, c)`` is object pixel ``(r + oy, c + ox)`` (x is the column, y the
  row, as everywhere in this project). Placed exactly, no registration needed (``"frame"``).
  ``metadata["object_initialisation"]`` says how pty-chi's object started (``"blank (ones)"``;
  older files of this project, which always started blank, do not record it).
* PtychoPINN's ``scripts/reconstruction/ptychi_reconstruct_tike.py``: keys
  ``reconstructed_object``, ``reconstructed_probe``, ``algorithm`` = ``'pty-chi'`` and
  ``timestamp``, no ``metadata``, no frame. Recognised by that content
  (:func:`is_ptychopinn_file`). Its canvas follows pty-chi's default ``SUPPORT`` origin with
  positions relative to their mean: canvas pixel ``(r, c)`` is object pixel
  ``(r + ȳ - (round(H/2) + 1), c + x̄ - (round(W/2) + 1))``, x̄, ȳ the mean test positions, H, W
  the canvas shape (:func:`ptychopinn_canvas_origin`). The comparison places it by that rule
  (``"rule"``, sub-pixel by Fourier shift) and registration reports the residual.
* Anything else: no frame; :func:`place_in_object_frame` centres it on the object grid and the
  comparison registers it to the ground truth (``"registration"``).

Initialisation: only this project's files say how the object started. For every other file
``Reconstruction.initialisation`` is ``"unknown"`` (PtychoPINN's script, for one, starts pty-chi
from the ground-truth object, which the file cannot show), and the comparison says so.

Nothing is unpickled: files are opened with ``np.load(..., allow_pickle=False)``. A required
array stored as a pickled object array is an error; a pickled ``metadata`` or ``algorithm``
entry (as older pipelines wrote them) is skipped with a warning.
"""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ReconstructionFileError
from .npz import open_npz, read_npz_member

__all__ = [
    "FORMAT_NAME",
    "WRITER_THIS_PROJECT",
    "WRITER_PTYCHOPINN",
    "PTYCHOPINN_PLACEMENT_RULE",
    "Reconstruction",
    "load_reconstruction",
    "save_reconstruction",
    "is_ptychopinn_file",
    "ptychopinn_canvas_origin",
    "place_by_ptychopinn_rule",
    "place_in_object_frame",
]

FORMAT_NAME = "compare_models.ptychi_reconstruction/1"
WRITER_THIS_PROJECT = "compare_models (ptycho-study reconstruct)"
WRITER_PTYCHOPINN = "PtychoPINN scripts/reconstruction/ptychi_reconstruct_tike.py"
WRITER_UNKNOWN = "unknown"
#: How this project's pty-chi runner starts the object, for files that predate the record.
DEFAULT_OWN_INITIALISATION = "blank (ones)"
PTYCHOPINN_PLACEMENT_RULE = (
    "PtychoPINN ptychi_reconstruct_tike.py (pty-chi SUPPORT origin, positions minus their "
    "mean): canvas pixel (r, c) is object pixel (r + mean_y - (round(H/2) + 1), "
    "c + mean_x - (round(W/2) + 1)), mean_x, mean_y the mean test positions"
)

# Fractional canvas origins closer than this to an integer are treated as integers.
_INTEGER_TOLERANCE_PX = 1e-6


@dataclass(frozen=True, eq=False)
class Reconstruction:
    """An iterative reconstruction read from an NPZ file.

    Attributes
    ----------
    object : ndarray, (H', W') complex64
        The reconstructed object on its own canvas.
    probe : ndarray, (N, N) complex64, or None
        The reconstructed (or fixed) probe, if the file holds one.
    algorithm : str
        Engine name (``"lsqml"``, ``"epie"``, ...) or ``"unknown"``.
    metadata : dict
        JSON-decoded ``metadata`` (empty when absent or unreadable).
    canvas_origin_xy : tuple of float, or None
        Object-frame (x, y) of the object array's pixel (0, 0); None when the writer did not
        record a frame, in which case the reconstruction must be registered.
    wall_time_s : float or None
        Reconstruction wall time in seconds, when recorded.
    source : str or None
        Path the reconstruction was read from.
    writer : str
        Who wrote the file, recognised by content: :data:`WRITER_THIS_PROJECT`,
        :data:`WRITER_PTYCHOPINN` or ``"unknown"``.
    placement_rule : str or None
        When ``canvas_origin_xy`` was derived by a writer's known rule rather than read from
        the file, that rule (see :func:`place_by_ptychopinn_rule`).
    timestamp : str or None
        The file's ``timestamp`` entry, when present.
    canvas_support : ndarray, (H', W') bool, or None
        Canvas pixels that hold reconstructed data (illuminated by the scan), when known;
        :func:`place_in_object_frame` then shifts without letting the rest of the canvas ring
        into them, and marks only them valid.
    """

    object: np.ndarray
    probe: np.ndarray | None = None
    algorithm: str = "unknown"
    metadata: dict = field(default_factory=dict)
    canvas_origin_xy: tuple[float, float] | None = None
    wall_time_s: float | None = None
    source: str | None = None
    writer: str = WRITER_UNKNOWN
    placement_rule: str | None = None
    timestamp: str | None = None
    canvas_support: np.ndarray | None = None

    @property
    def placed_by(self) -> str:
        """``"frame"``: the file records its canvas origin; ``"rule"``: the origin follows the
        writer's known placement rule; ``"registration"``: no frame, it must be registered."""
        if self.canvas_origin_xy is None:
            return "registration"
        return "rule" if self.placement_rule else "frame"

    @property
    def initialisation(self) -> str:
        """How the reconstruction's object started: what this project's files record, else
        ``"unknown"`` (a foreign file cannot show it)."""
        if self.writer == WRITER_THIS_PROJECT:
            return str(self.metadata.get("object_initialisation", DEFAULT_OWN_INITIALISATION))
        return "unknown"

    @property
    def label(self) -> str:
        """What the reconstruction is, as reports name the arm: the engine and who ran it,
        e.g. ``"pty-chi LSQML (iterative; ptycho-study reconstruct)"``."""
        known = self.algorithm not in ("unknown", "pty-chi", "")
        engine = f"pty-chi {self.algorithm.upper()}" if known else "pty-chi (engine not recorded)"
        by = {
            WRITER_THIS_PROJECT: "ptycho-study reconstruct",
            WRITER_PTYCHOPINN: "PtychoPINN's ptychi_reconstruct_tike.py",
        }.get(self.writer, "writer unknown")
        return f"{engine} (iterative; {by})"


# --------------------------------------------------------------------------------------------
# Writing


def save_reconstruction(
    path,
    obj,
    *,
    probe=None,
    algorithm: str,
    metadata: dict | None = None,
) -> Path:
    """Write a reconstruction NPZ readable with ``np.load(path, allow_pickle=False)``.

    Parameters
    ----------
    path : str or os.PathLike
        Output file; its parent directory is created. Written to a temporary name and
        renamed, so a reader never sees half a file.
    obj : ndarray, (H', W') complex
        Reconstructed object.
    probe : ndarray, (N, N) complex, optional
    algorithm : str
    metadata : dict, optional
        JSON-serialisable; stored as a 0-d string array. Include ``canvas_origin_xy`` to let
        readers place the object without registration (see module docstring).

    Returns
    -------
    pathlib.Path
    """
    path = Path(path)
    obj = np.asarray(obj)
    if obj.ndim != 2 or obj.dtype.kind != "c":
        raise ValueError(f"obj must be a 2-D complex array, got {obj.dtype} {obj.shape}")
    meta = {"format": FORMAT_NAME, **(metadata or {})}
    arrays = {
        "reconstructed_object": obj.astype(np.complex64),
        "algorithm": np.array(str(algorithm)),
        "metadata": np.array(json.dumps(meta, sort_keys=True)),
    }
    if probe is not None:
        arrays["reconstructed_probe"] = np.asarray(probe).astype(np.complex64)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
    return path


# --------------------------------------------------------------------------------------------
# Reading


def _read(archive, key: str, path, *, required: bool):
    """The array under ``key``; None (with a warning) for a pickled optional entry."""
    return read_npz_member(archive, key, path, error=ReconstructionFileError, optional=not required)


def _squeeze_leading(array: np.ndarray, rank: int) -> np.ndarray:
    while array.ndim > rank and array.shape[0] == 1:
        array = array[0]
    return array


def _complex_image(array: np.ndarray, key: str, path, expected: str) -> np.ndarray:
    if array.dtype.kind != "c":
        raise ReconstructionFileError(
            f"{path}: key '{key}' has dtype {array.dtype}; expected a complex array {expected}"
        )
    array = _squeeze_leading(array, 2)
    if array.ndim != 2:
        raise ReconstructionFileError(
            f"{path}: key '{key}' has shape {array.shape}; expected a 2-D complex array {expected}"
        )
    if array.size == 0:
        raise ReconstructionFileError(f"{path}: key '{key}' is empty; expected {expected}")
    if not np.isfinite(array).all():
        raise ReconstructionFileError(f"{path}: key '{key}' contains NaN or infinite values")
    return np.ascontiguousarray(array, dtype=np.complex64)


def _string(array, key: str, path) -> str | None:
    if array is None:
        return None
    if array.dtype.kind not in "US" or array.size != 1:
        warnings.warn(
            f"{path}: key '{key}' is not a string (dtype {array.dtype}); skipped", stacklevel=3
        )
        return None
    text = array.reshape(()).item()
    return text.decode("utf-8") if isinstance(text, bytes) else str(text)


def _origin(value, path) -> tuple[float, float] | None:
    if value is None:
        return None
    try:
        ox, oy = (float(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise ReconstructionFileError(
            f"{path}: metadata 'canvas_origin_xy' is {value!r}; expected two numbers [x, y]"
        ) from exc
    if not (np.isfinite(ox) and np.isfinite(oy)):
        raise ReconstructionFileError(f"{path}: metadata 'canvas_origin_xy' is not finite")
    return ox, oy


def load_reconstruction(path) -> Reconstruction:
    """Read a reconstruction NPZ (this project's or another writer's) without unpickling.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    Reconstruction

    Raises
    ------
    ReconstructionFileError
        If the file is missing or not an NPZ, lacks ``reconstructed_object``, or holds an
        object that is not a finite 2-D complex array (or a pickled one). The message names
        the file, the key and what was expected.
    """
    path = Path(path)
    if not path.exists():
        raise ReconstructionFileError(f"{path}: no such file")
    if path.is_dir():
        raise ReconstructionFileError(
            f"{path}: is a directory; expected a reconstruction file (ptychi_reconstruction.npz)"
        )
    if not zipfile.is_zipfile(path):
        raise ReconstructionFileError(
            f"{path}: not an NPZ archive; expected a reconstruction file with key "
            "'reconstructed_object'"
        )
    with open_npz(path, error=ReconstructionFileError) as archive:
        files = set(archive.files)
        if "reconstructed_object" not in files:
            raise ReconstructionFileError(
                f"{path}: missing key 'reconstructed_object': expected the (H, W) complex "
                f"object (keys present: {', '.join(sorted(files)) or 'none'})"
            )
        obj = _complex_image(
            _read(archive, "reconstructed_object", path, required=True),
            "reconstructed_object",
            path,
            "(H, W)",
        )
        probe = None
        if "reconstructed_probe" in files:
            probe = _complex_image(
                _read(archive, "reconstructed_probe", path, required=True),
                "reconstructed_probe",
                path,
                "(N, N)",
            )
        algorithm = None
        if "algorithm" in files:
            algorithm = _string(_read(archive, "algorithm", path, required=False), "algorithm", path)
        timestamp = None
        if "timestamp" in files:
            timestamp = _string(_read(archive, "timestamp", path, required=False), "timestamp", path)
        metadata: dict = {}
        if "metadata" in files:
            text = _string(_read(archive, "metadata", path, required=False), "metadata", path)
            if text is not None:
                try:
                    metadata = json.loads(text)
                except json.JSONDecodeError as exc:
                    raise ReconstructionFileError(
                        f"{path}: key 'metadata' is not valid JSON ({exc})"
                    ) from exc
                if not isinstance(metadata, dict):
                    raise ReconstructionFileError(
                        f"{path}: key 'metadata' must hold a JSON object, got "
                        f"{type(metadata).__name__}"
                    )
    wall = metadata.get("wall_time_s")
    if metadata.get("format") == FORMAT_NAME:
        writer = WRITER_THIS_PROJECT
    elif is_ptychopinn_file(files, algorithm, timestamp):
        writer = WRITER_PTYCHOPINN
    else:
        writer = WRITER_UNKNOWN
    return Reconstruction(
        object=obj,
        probe=probe,
        algorithm=algorithm or str(metadata.get("algorithm", "unknown")),
        metadata=metadata,
        canvas_origin_xy=_origin(metadata.get("canvas_origin_xy"), path),
        wall_time_s=None if wall is None else float(wall),
        source=str(path),
        writer=writer,
        timestamp=timestamp,
    )


def is_ptychopinn_file(keys, algorithm: str | None, timestamp: str | None) -> bool:
    """True for a file written by PtychoPINN's ``ptychi_reconstruct_tike.py``.

    Its content: ``algorithm`` == ``'pty-chi'`` (the library, not the engine), a ``timestamp``
    entry, and no ``metadata`` (so no frame).
    """
    return algorithm == "pty-chi" and timestamp is not None and "metadata" not in set(keys)


def ptychopinn_canvas_origin(canvas_shape, positions_xy) -> tuple[float, float]:
    """Object-frame (x, y) of pixel (0, 0) of a PtychoPINN pty-chi canvas.

    Parameters
    ----------
    canvas_shape : tuple of int
        (H, W) of ``reconstructed_object``.
    positions_xy : ndarray, (M, 2)
        The test positions the reconstruction was made from, object pixels (x column, y row).

    Returns
    -------
    tuple of float
        ``(x̄ - (round(W/2) + 1), ȳ - (round(H/2) + 1))``: canvas pixel (r, c) is object pixel
        (r + oy, c + ox). ``round`` rounds half to even, as Python's and NumPy's do.

    Notes
    -----
    PtychoPINN's script hands pty-chi (1.5 for the shared fixtures) the positions minus their
    mean and keeps pty-chi's default ``SUPPORT`` origin; the rule above is that frame. It is
    not the frame of this project's own runner (pty-chi 2.2, positions chosen so that the
    recorded origin is exact), so it is applied only to files recognised as PtychoPINN's, and
    registration reports what is left (a tenth of a pixel on the shared fixture; see
    ``tests/test_ptychopinn_compare.py``).
    """
    height, width = (int(v) for v in canvas_shape)
    mean_x, mean_y = np.asarray(positions_xy, dtype=np.float64).mean(axis=0)
    return float(mean_x - (round(width / 2) + 1)), float(mean_y - (round(height / 2) + 1))


def place_by_ptychopinn_rule(recon: Reconstruction, positions_xy, patch_size: int) -> Reconstruction:
    """``recon`` placed by :func:`ptychopinn_canvas_origin` (its ``placed_by`` becomes
    ``"rule"``); any other file is returned unchanged.

    Parameters
    ----------
    recon : Reconstruction
    positions_xy : ndarray, (M, 2)
        The test positions, object pixels.
    patch_size : int
        N; with the positions it gives the canvas pixels the scan illuminated
        (``canvas_support``). The rest of such a canvas is not reconstructed (PtychoPINN's
        script fills it from the ground truth), so it is neither valid nor allowed to ring
        into the data when the canvas is shifted by a fraction of a pixel.
    """
    from ..imaging.registration import scanned_region

    if recon.writer != WRITER_PTYCHOPINN or recon.canvas_origin_xy is not None:
        return recon
    origin = ptychopinn_canvas_origin(recon.object.shape, positions_xy)
    canvas_positions = np.asarray(positions_xy, dtype=np.float64) - np.asarray(origin)
    support = scanned_region(canvas_positions, int(patch_size), recon.object.shape)
    return dataclasses.replace(
        recon, canvas_origin_xy=origin, placement_rule=PTYCHOPINN_PLACEMENT_RULE, canvas_support=support
    )


# --------------------------------------------------------------------------------------------
# Placing on the ground-truth grid


def _paste(image: np.ndarray, origin_rc: tuple[int, int], shape: tuple[int, int]):
    """Paste ``image`` with its pixel (0, 0) at integer ``origin_rc`` into a zero canvas of
    ``shape``; return (canvas, mask of the pasted pixels). Parts outside are dropped."""
    height, width = shape
    canvas = np.zeros(shape, dtype=np.complex64)
    valid = np.zeros(shape, dtype=bool)
    r0, c0 = origin_rc
    top, left = max(r0, 0), max(c0, 0)
    bottom, right = min(r0 + image.shape[0], height), min(c0 + image.shape[1], width)
    if bottom > top and right > left:
        canvas[top:bottom, left:right] = image[top - r0 : bottom - r0, left - c0 : right - c0]
        valid[top:bottom, left:right] = True
    return canvas, valid


def place_in_object_frame(recon: Reconstruction, object_shape) -> tuple[np.ndarray, np.ndarray]:
    """Put a reconstruction on the ground-truth pixel grid of shape ``object_shape``.

    Parameters
    ----------
    recon : Reconstruction
    object_shape : tuple of int
        (H, W) of the ground truth (``objectGuess``).

    Returns
    -------
    image : ndarray, (H, W) complex64
        The reconstruction in the object frame; zero where it has no data.
    valid : ndarray, (H, W) bool
        True where ``image`` holds reconstruction pixels.

    Notes
    -----
    With a recorded frame or a writer's rule (``recon.placed_by`` is ``"frame"`` or
    ``"rule"``) reconstruction pixel ``(r, c)``
    lands on object pixel ``(r + oy, c + ox)``. Integer origins are placed exactly. A
    fractional origin is split into ``floor`` plus a fraction ``f`` in [0, 1); the object is
    first shifted by ``+f`` pixels with the Fourier shift theorem (periodic, so the outermost
    pixel on the leading edges is dropped from ``valid``), then pasted at the integer part.
    With a ``recon.canvas_support``, pixels outside it are first replaced by their nearest
    supported pixel and the canvas is padded before the shift
    (:func:`compare_models.imaging.registration.fourier_shift_image`), so nothing outside the
    support rings into it; only the support (at both integer neighbours of the fractional
    origin) is valid.

    Without a frame (``"registration"``) the reconstruction is centred on the grid (cropped
    or zero-padded symmetrically, floor on the leading side); its position is then only a
    starting point, and the caller must register it to the ground truth.
    """
    height, width = (int(s) for s in object_shape)
    obj = recon.object
    if recon.canvas_origin_xy is None:
        r0 = (height - obj.shape[0]) // 2
        c0 = (width - obj.shape[1]) // 2
        return _paste(obj, (r0, c0), (height, width))
    ox, oy = recon.canvas_origin_xy
    ix, iy = np.floor(ox), np.floor(oy)
    fx, fy = ox - ix, oy - iy
    if fx > 1 - _INTEGER_TOLERANCE_PX:
        ix, fx = ix + 1, 0.0
    if fy > 1 - _INTEGER_TOLERANCE_PX:
        iy, fy = iy + 1, 0.0
    fx = 0.0 if fx < _INTEGER_TOLERANCE_PX else fx
    fy = 0.0 if fy < _INTEGER_TOLERANCE_PX else fy
    support = recon.canvas_support
    if fx == 0.0 and fy == 0.0:
        image, valid = _paste(obj, (int(iy), int(ix)), (height, width))
        if support is not None:
            placed_support, _ = _paste(support.astype(np.complex64), (int(iy), int(ix)), (height, width))
            valid &= placed_support.real > 0.5
            image[~valid] = 0
        return image, valid
    # Pixels that wrapped around from the trailing edge (or were padding) are not data.
    keep = np.ones(obj.shape, dtype=bool)
    if fy:
        keep[0, :] = False
    if fx:
        keep[:, 0] = False
    if support is None:
        from scipy.ndimage import fourier_shift

        shifted = np.fft.ifft2(fourier_shift(np.fft.fft2(obj), (fy, fx))).astype(np.complex64)
    else:
        from ..imaging.registration import fourier_shift_image

        shifted = fourier_shift_image(obj, (fy, fx), valid=support).astype(np.complex64)
        # A shifted pixel is data if both of its integer neighbours were.
        moved = np.zeros_like(support)
        moved[int(bool(fy)):, int(bool(fx)):] = support[: support.shape[0] - int(bool(fy)), : support.shape[1] - int(bool(fx))]
        keep &= support & moved
    image, valid = _paste(shifted, (int(iy), int(ix)), (height, width))
    keep_placed, _ = _paste(keep.astype(np.complex64), (int(iy), int(ix)), (height, width))
    valid &= keep_placed.real > 0.5
    image[~valid] = 0
    return image, valid

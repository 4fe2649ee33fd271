"""The words a comparison's outputs use: model names, what each number is, table titles.

Everything a reader sees that names or defines a number lives here, so that the CSV, metrics.json,
the printed summary and report.html say one thing; :mod:`compare_models.imaging` computes the
numbers and knows none of these words.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

__all__ = [
    "MODEL_NAMES",
    "ARM_KINDS",
    "MODEL_KINDS",
    "HALF_SET_MEANINGS",
    "HALF_SET_MEANING_TEXT",
    "NETWORK_HALVES_UNREGISTERED",
    "HALF_SET_THRESHOLD_WORDS",
    "half_set_role",
    "HALF_SET_KIND_TITLES",
    "DEFINITIONS",
    "HALF_SET_DEFINITIONS",
    "HALF_SET_REGION_RULE",
    "GROUND_TRUTH_TABLE_TITLE",
    "HALF_SET_TABLE_TITLE",
    "HALF_SET_TABLE_ROWS",
    "FRC_KIND_LABELS",
    "RANKED_METRICS",
    "LEGACY_METRICS",
    "EXIT_FAILED_ARMS",
    "FAILURE_RULE",
    "CHANCE_NAME",
    "CHANCE_LABEL",
    "seen_in_training_text",
    "protocol_text",
    "CHANCE_DEFINITION",
    "CHANCE_FLAG",
]

#: Model names in comparison_metrics.csv, as the existing aggregation scripts expect them.
MODEL_NAMES = MappingProxyType({"pinn": "PtychoPINN", "baseline": "Baseline", "ptychi": "PtyChi"})

#: What kind of arm each arm is: an iterative reconstruction, or a network.
ARM_KINDS = MappingProxyType({"pinn": "network", "baseline": "network", "ptychi": "iterative"})
#: The same, by the arm's name in the outputs.
MODEL_KINDS = MappingProxyType({MODEL_NAMES[key]: kind for key, kind in ARM_KINDS.items()})

#: What an arm's half-set FRC measures, by the arm's kind: one word.
HALF_SET_MEANINGS = MappingProxyType({"iterative": "resolution", "network": "reproducibility"})
#: The same, in a sentence (metrics.json, report.html, the printed summary, the sweep report).
HALF_SET_MEANING_TEXT = MappingProxyType(
    {
        "iterative": (
            "resolution: two reconstructions from disjoint halves of the scan agree about the "
            "object up to this frequency (van Heel & Schatz 2005)"
        ),
        "network": (
            "reproducibility of the network's image under independent data, not a resolution: its "
            "two halves share the network's weights and learned bias, so they also agree on what is "
            "not the object; never ranked against an iterative arm's resolution (frc50 against "
            "ground truth says how true the image is)"
        ),
    }
)
#: A network's two halves are not registered to each other, and why.
NETWORK_HALVES_UNREGISTERED = (
    "no shift estimated: a network's two half images are stitched by one model on one grid, so "
    "they share one frame by construction (a fitted shift would only follow noise); the gauge is "
    "still fitted"
)

#: What each half-set number is, as metrics.json records it.
HALF_SET_DEFINITIONS = MappingProxyType(
    {
        "halfset_frc1over7": (
            "half-set FRC (two images of one arm from disjoint halves of the scan, no ground truth) "
            "falls below 1/7 (van Heel & Schatz 2005), fraction of Nyquist: for an iterative arm "
            "(pty-chi) its resolution; for a network the reproducibility of its image under "
            "independent data, not a resolution; the two kinds are never ranked against each other"
        ),
        "halfset_frc_halfbit": (
            "half-set FRC falls below the 1/2-bit information curve (van Heel & Schatz 2005), "
            "fraction of Nyquist: a resolution for an iterative arm, a reproducibility for a network"
        ),
        "halfset_frc_1bit": (
            "half-set FRC falls below the 1-bit information curve (van Heel & Schatz 2005), "
            "fraction of Nyquist: a resolution for an iterative arm, a reproducibility for a network"
        ),
    }
)

#: Each half-set threshold in words, for the cut-offs' ``role``.
HALF_SET_THRESHOLD_WORDS = MappingProxyType(
    {
        "1/7": "fixed 1/7 threshold",
        "halfbit": "1/2-bit information curve",
        "1bit": "1-bit information curve",
    }
)


def half_set_role(threshold: str, arm_kind: str) -> str:
    """What a half-set cut-off is, for one kind of arm: ``role`` in metrics.json and
    report.html."""
    what = "resolution" if arm_kind == "iterative" else "reproducibility under independent data, not a resolution"
    return f"{what} (half-set FRC, {HALF_SET_THRESHOLD_WORDS[threshold]}; van Heel & Schatz 2005)"

#: What each number in a comparison is, as metrics.json records it.
DEFINITIONS = MappingProxyType(
    {
        "mae": "mean |test - truth| over the scored region (units of the component; phase in rad)",
        "mse": "mean (test - truth)^2 over the scored region",
        "psnr": "10 log10(data_range^2 / mse), dB; data_range: the truth's max - min over the scored region",
        "ssim": (
            "SSIM (Wang et al. 2004): 11-tap Gaussian window, sigma 1.5, K1 0.01, K2 0.03, "
            "L = data_range, mean over windows centred in the scored region"
        ),
        "ms_ssim": (
            "MS-SSIM (Wang, Simoncelli & Bovik 2003): 5 scales, weights 0.0448, 0.2856, 0.3001, "
            "0.2363, 0.1333, 2x2 mean and decimation between scales, L = data_range; no blur "
            "first unless ms_ssim_sigma is given (then both images, amplitude and phase alike); "
            "ms_ssim_scales gives the scales used (fewer, with renormalised weights, only when "
            "the region's box is under 161 px a side)"
        ),
        "ms_ssim_scales": "number of MS-SSIM scales behind ms_ssim",
        "frc50": (
            "FRC against ground truth, 0.5 threshold (Rosenthal & Henderson 2003): the "
            "resolution, as a fraction of Nyquist (half-period resolution = pixel size / value)"
        ),
        "frc1over7": (
            "legacy: where FRC against ground truth falls below 1/7, kept for existing "
            "aggregation scripts; NOT a resolution (1/7 is a half-set threshold)"
        ),
        "data_range": "the truth's max - min over the scored region (amplitude; phase in rad)",
    }
)


#: The half-set region, in words, as metrics.json records it.
HALF_SET_REGION_RULE = (
    "pixels whose centre lies in the convex hull of the scan positions (all of them) where both "
    "half images of every arm have data (valid mask and a non-zero value), eroded (chessboard "
    "distance, the grid's border counting as outside) by ceil(largest half-to-half shift) + "
    "margin pixels"
)

#: Titles of the two printed tables, so that neither kind of number is read as the other.
GROUND_TRUTH_TABLE_TITLE = (
    "against ground truth (frc50: FRC against the truth at 0.5, Rosenthal & Henderson 2003):"
)
HALF_SET_TABLE_TITLE = (
    "half-set FRC (two images of each arm from disjoint halves of the scan, no ground truth "
    "needed; 1/7, 1/2-bit and 1-bit thresholds, van Heel & Schatz 2005), fraction of Nyquist; "
    "a resolution for an iterative arm, a reproducibility for a network, in separate tables:"
)
#: Titles of the half-set tables by kind of arm: the two are never one table or one axis.
HALF_SET_KIND_TITLES = MappingProxyType(
    {
        "iterative": "iterative arms: half-set resolution",
        "network": (
            "networks: reproducibility of the image under independent data (NOT a resolution; "
            "never to be ranked against an iterative arm's resolution)"
        ),
    }
)

#: Half-set rows of the printed table, with the label each carries.
HALF_SET_TABLE_ROWS = (
    ("halfset_frc1over7", "1/7"),
    ("halfset_frc_halfbit", "1/2-bit"),
    ("halfset_frc_1bit", "1-bit"),
)

#: What each FRC kind is, for figure labels.
FRC_KIND_LABELS = MappingProxyType(
    {
        "ground_truth": "FRC against ground truth",
        "half_set": "half-set FRC (two disjoint halves, no ground truth)",
        "half_set/iterative": "half-set FRC of iterative arms: resolution",
        "half_set/network": "half-set FRC of networks: reproducibility, not a resolution",
    }
)

#: The metrics against ground truth that rank arms, and which way is better (+1: higher, -1:
#: lower). Only these are ever marked "best" or compared with the chance level.
RANKED_METRICS = MappingProxyType({"mae": -1, "mse": -1, "psnr": 1, "ssim": 1, "ms_ssim": 1, "frc50": 1})

#: Numbers kept for existing scripts that are not measures of quality: never ranked, never
#: marked best, never compared with the chance level (``frc1over7``: 1/7 against ground truth;
#: ``frc_1bit``, ``frc_halfbit``: half-set thresholds that older files applied to the truth).
LEGACY_METRICS = ("frc1over7", "frc_1bit", "frc_halfbit")

#: Exit status of a comparison that completed and wrote every arm it could score, with at least
#: one arm that failed (2 is bad input: then only logs/ and FAILED are written).
EXIT_FAILED_ARMS = 3

#: What happens to an arm that fails, as metrics.json records it.
FAILURE_RULE = (
    "one arm never costs the others their numbers: an arm whose image cannot be made, or that "
    "cannot be scored (no data inside the scan's hull, a shift that cannot be estimated or "
    "exceeds --max-shift, an image the gauge or a metric cannot use), is named here with its "
    "reason and fix; every other arm is scored as if it had not been given (the region and the "
    "largest shift leave it out) and written; the run exits 3. A run in which no arm has any "
    "number fails as a whole (exit 2, FAILED)"
)

#: The chance level's model name in comparison_metrics.csv and metrics.json.
CHANCE_NAME = "Constant"
#: What the chance arm is, as the reports name an arm (``label``).
CHANCE_LABEL = "constant image (chance level)"

#: What the chance level is, as metrics.json's definitions record it.
CHANCE_DEFINITION = (
    "chance level: a constant image of the truth's mean amplitude and mean phase over the scored "
    "region (the mean phase is the angle of the mean unit phasor exp(i phase), which a 2 pi wrap "
    "does not move), scored on the same region by the same rules: no shift (every shift of a "
    "constant is itself), its gauge fitted like any arm's (the amplitude scale leaves it at the "
    "truth's mean amplitude; the phase offset and, with --phase-align-method ramp, the ramp give "
    "it the plane of the truth's phase that any arm gets for free), then every metric. It never "
    "adds to the region. Its FRC against the truth is 0 at every ring where it has no structure "
    "(a constant amplitude has none), so its frc50 there is ring 1, the floor of the measure. An "
    "arm that does not beat it on a ranked metric (mae, mse, psnr, ssim, ms_ssim, frc50; a tie "
    "does not beat it) has learned nothing measurable by that metric, and the outputs flag it"
)

#: How a flag reads, in words.
CHANCE_FLAG = "does not beat the constant image (chance level)"


def protocol_text(protocol) -> str | None:
    """How a network was trained, in words (metrics.json ``training_protocol``: its
    ``description``, else its ``train_on``); None for an arm without a protocol."""
    if not isinstance(protocol, Mapping):
        return None
    return protocol.get("description", protocol.get("train_on"))


def seen_in_training_text(seen, protocol=None) -> str:
    """``seen_in_training`` in words: a percentage of the scored region, saying when what was
    seen is the test scan's diffraction and never its ground truth (a self-supervised
    network's protocol); ``"unknown"`` as it is; "–" when there is none."""
    if seen is None or isinstance(seen, bool):
        return "–"
    if not isinstance(seen, (int, float)):
        return str(seen)
    text = f"{100 * seen:.1f} %"
    if seen > 0 and isinstance(protocol, Mapping) and protocol.get("train_on") == "test-diffraction":
        text += " (its diffraction only, never its ground truth)"
    return text

"""Measure the trained classifier on the held-out modality and in distribution, and print the table.

Run from the repository root::

    python -m model.evaluate                 # the shipped weights; writes model/evaluation.json
    python -m model.evaluate --weights other.npz --count 4000

The held-out set is cut from scans of a modality that training never saw (see model/data.py); the
in-distribution set from the training scans, with new crops and new lesions. Both are seeded, so the
figures are reproducible. Needs pydicom-data (the scans); the shipped weights alone do not.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from model import data, load
from model.train import roc_auc

EVALUATION_PATH = Path(__file__).resolve().parent / "evaluation.json"
DEFAULT_TEST_COUNT = 2000
CONTRAST_BANDS = ((0.08, 0.15), (0.15, 0.25), (0.25, 0.4))


@dataclass(frozen=True)
class Metrics:
    """Figures of one classifier on one labelled set (threshold: the more probable class).

    Attributes
    ----------
    count : int
    accuracy, sensitivity, specificity, roc_auc : float
        sensitivity = TP / (TP + FN) (lesions found), specificity = TN / (TN + FP).
    confusion : list of list of int
        [[TN, FP], [FN, TP]]: rows the truth (no lesion, lesion), columns the answer.
    auc_by_contrast : dict of str to float
        ROC AUC of all negatives against the positives in each contrast band.
    cam_hit_rate : float
        Among positives, the fraction whose class activation map peaks inside the lesion.
    """

    count: int
    accuracy: float
    sensitivity: float
    specificity: float
    roc_auc: float
    confusion: list
    auc_by_contrast: dict
    cam_hit_rate: float


def cam_peak_inside(classifier, patch_set, *, limit=None):
    """For each positive patch, whether the CAM's maximum falls inside the inserted lesion.

    Returns
    -------
    bool array (number of positives considered,)
    """
    positives = np.flatnonzero(patch_set.labels == 1)
    if limit is not None:
        positives = positives[:limit]
    hits = []
    for index in positives:
        cam = classifier.cam(patch_set.patches[index])
        row, col = np.unravel_index(int(np.argmax(cam)), cam.shape)
        hits.append(bool(patch_set.lesion_masks[index, row, col]))
    return np.array(hits, dtype=bool)


def evaluate(classifier, patch_set, *, cam_limit=500):
    """Compute :class:`Metrics` for ``classifier`` on ``patch_set`` (a :class:`model.data.PatchSet`)."""
    probabilities = classifier.predict_proba(patch_set.patches)[:, 1]
    labels = patch_set.labels
    predicted = (probabilities > 0.5).astype(np.int64)
    true_negative = int(((predicted == 0) & (labels == 0)).sum())
    false_positive = int(((predicted == 1) & (labels == 0)).sum())
    false_negative = int(((predicted == 0) & (labels == 1)).sum())
    true_positive = int(((predicted == 1) & (labels == 1)).sum())
    negatives = labels == 0
    magnitudes = np.abs(patch_set.contrasts)
    by_contrast = {}
    for low, high in CONTRAST_BANDS:
        chosen = negatives | ((labels == 1) & (magnitudes >= low) & (magnitudes <= high))
        by_contrast[f"{low:.2f}-{high:.2f}"] = round(roc_auc(labels[chosen], probabilities[chosen]), 4)
    return Metrics(
        count=len(labels),
        accuracy=round(float((predicted == labels).mean()), 4),
        sensitivity=round(true_positive / max(true_positive + false_negative, 1), 4),
        specificity=round(true_negative / max(true_negative + false_positive, 1), 4),
        roc_auc=round(roc_auc(labels, probabilities), 4),
        confusion=[[true_negative, false_positive], [false_negative, true_positive]],
        auc_by_contrast=by_contrast,
        cam_hit_rate=round(float(cam_peak_inside(classifier, patch_set, limit=cam_limit).mean()), 4),
    )


def test_sets(count=DEFAULT_TEST_COUNT):
    """The two seeded test sets: {"held_out": PatchSet, "in_distribution": PatchSet}, and the source names."""
    training_images, held_images = data.split_by_modality(data.load_source_images())
    sets = {
        "held_out": data.make_patch_set(held_images, count, data.HELD_OUT_SEED),
        "in_distribution": data.make_patch_set(training_images, count, data.IN_DISTRIBUTION_SEED),
    }
    sources = {"held_out": [image.name for image in held_images],
               "training": [image.name for image in training_images]}
    return sets, sources


def metrics_table(results):
    """A Markdown table of {set name: Metrics}."""
    names = list(results)
    lines = ["| | " + " | ".join(name.replace("_", "-") for name in names) + " |",
             "| --- |" + " --- |" * len(names)]

    def row(label, values):
        lines.append(f"| {label} | " + " | ".join(values) + " |")

    row("patches (half with a lesion)", [str(results[name].count) for name in names])
    row("ROC AUC", [f"{results[name].roc_auc:.3f}" for name in names])
    row("accuracy", [f"{results[name].accuracy:.3f}" for name in names])
    row("sensitivity (lesions found)", [f"{results[name].sensitivity:.3f}" for name in names])
    row("specificity (clear patches passed)", [f"{results[name].specificity:.3f}" for name in names])
    row("confusion [[TN, FP], [FN, TP]]", [str(results[name].confusion) for name in names])
    for band in results[names[0]].auc_by_contrast:
        row(f"ROC AUC, contrast {band}", [f"{results[name].auc_by_contrast[band]:.3f}" for name in names])
    row("CAM peak inside the lesion", [f"{results[name].cam_hit_rate:.3f}" for name in names])
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m model.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=None, help="default: the shipped model/weights.npz")
    parser.add_argument("--count", type=int, default=DEFAULT_TEST_COUNT, help="patches per test set")
    parser.add_argument("--output", type=Path, default=None,
                        help=f"where to write the figures as JSON (default: {EVALUATION_PATH.name} for the "
                             f"shipped weights, nothing otherwise)")
    args = parser.parse_args(argv)
    classifier = load(args.weights)
    sets, sources = test_sets(args.count)
    results = {name: evaluate(classifier, patch_set) for name, patch_set in sets.items()}
    print(f"Held out (never seen in training): every {data.HELD_OUT_MODALITY} scan: {', '.join(sources['held_out'])}")
    print(f"Training scans (in distribution, new crops and lesions): {', '.join(sources['training'])}")
    print()
    print(metrics_table(results))
    output = args.output or (EVALUATION_PATH if args.weights is None else None)
    if output is not None:
        record = {"count": args.count, "held_out_modality": data.HELD_OUT_MODALITY, "sources": sources,
                  "metrics": {name: asdict(metrics) for name, metrics in results.items()}}
        output.write_text(json.dumps(record, indent=2) + "\n")
        print(f"\nWrote {output}")


if __name__ == "__main__":
    main()

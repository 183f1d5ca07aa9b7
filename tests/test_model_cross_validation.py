"""The recorded cross-validation (model/cross_validation.json): the folds are the ones model.data defines,
each fold's figures follow from its recorded answers on its seeded held-out patches, the brain MR bar
holds, and the README's gallery of mistakes is drawn from those answers."""

import json
from pathlib import Path

import numpy as np
import pytest

from model.train import roc_auc

ROOT = Path(__file__).resolve().parents[1]
RECORD = ROOT / "model" / "cross_validation.json"


@pytest.fixture(scope="module")
def record():
    return json.loads(RECORD.read_text())


@pytest.fixture(scope="module")
def folds():
    pytest.importorskip("data_store", reason="the test scans come from pydicom-data (pip install pydicom-data)")
    from model import data

    return {fold.name: fold for fold in data.cross_validation_folds(data.load_source_images())}


def test_recorded_folds_are_model_data_folds_with_their_held_out_scans(record, folds):
    recorded = [entry["fold"] for entry in record["folds"]]
    # In model.data's order; a fold not run yet is named in record["not_run"] (and in the README).
    assert recorded == [name for name in folds if name in recorded]
    assert sorted(set(folds) - set(recorded)) == sorted(record.get("not_run", []))
    for entry in record["folds"]:
        fold = folds[entry["fold"]]
        assert entry["held_out_scans"] == sorted({image.scan for image in fold.held_out})
        assert entry["training_scans"] == len({image.scan for image in fold.training})
        assert len(entry["probabilities"]) == record["count"]


def test_recorded_figures_follow_from_the_recorded_answers_on_the_seeded_patches(record, folds):
    from model.evaluate import fold_test_set

    for entry in record["folds"]:
        labels = fold_test_set(folds[entry["fold"]], record["count"]).labels
        probabilities = np.array(entry["probabilities"])
        metrics = entry["metrics"]
        assert roc_auc(labels, probabilities) == pytest.approx(metrics["roc_auc"], abs=2e-4), entry["fold"]
        predicted = probabilities > 0.5
        assert [[int((~predicted & (labels == 0)).sum()), int((predicted & (labels == 0)).sum())],
                [int((~predicted & (labels == 1)).sum()), int((predicted & (labels == 1)).sum())]] == metrics["confusion"]
        # The same network on patches cut as the app shows the held-out scans.
        shown_labels = fold_test_set(folds[entry["fold"]], record["count"], as_shown=True).labels
        assert len(entry["as_shown"]["probabilities"]) == record["count"]
        assert roc_auc(shown_labels, np.array(entry["as_shown"]["probabilities"])) == pytest.approx(
            entry["as_shown"]["roc_auc"], abs=2e-4), entry["fold"]


def test_recorded_other_generators_figures_follow_from_the_recorded_answers(record):
    # Each fold model on its held-out scans as shown, with lesions drawn by model.outside_lesions.
    from model.data import HELD_OUT_SEED
    from model.outside_lesions import OUTSIDE_GENERATORS, outside_labels

    labels = outside_labels(record["count"], HELD_OUT_SEED)
    for entry in record["folds"]:
        outside = entry["as_shown"]["outside_generators"]
        assert list(outside) == list(OUTSIDE_GENERATORS), entry["fold"]
        for name, answers in outside.items():
            assert len(answers["probabilities"]) == record["count"]
            assert roc_auc(labels, np.array(answers["probabilities"])) == pytest.approx(
                answers["roc_auc"], abs=2e-4), (entry["fold"], name)


def test_held_out_brain_mr_is_well_above_chance(record, folds):
    from model.evaluate import pooled_auc

    brain = [entry for entry in record["folds"] if entry["kind"] == "scan"]
    assert len(brain) >= 5
    # Each brain MR scan scored only by a network that never saw it, its patches pooled. Issue #18
    # asks for 0.85 (goal 0.95): reached only as the app shows the scans, by less than the seed spread
    # (see the README); this guards what was measured. Measured (issue #18's tenth session, photographs
    # among the backgrounds): pooled 0.818, mean 0.812, lowest 0.635 (emri_small); the seventh session's
    # recipe: pooled 0.820, mean 0.814.
    assert pooled_auc(record["folds"]) > 0.8
    assert min(entry["metrics"]["roc_auc"] for entry in brain) > 0.6
    # The same fold models on patches cut as the app shows each scan (fifteenth session, 16 views): pooled
    # 0.852, mean 0.856, lowest 0.813 (emri_small, a whole 64 x 64 slice per patch instead of a 2x
    # quarter); from 8 views pooled 0.847, mean 0.851; before the photographs pooled 0.844, mean 0.844.
    assert pooled_auc(record["folds"], as_shown=True) > 0.84
    assert min(entry["as_shown"]["roc_auc"] for entry in brain) > 0.72
    # With other generators' lesions (model.outside_lesions) the same patches as shown score lower, the
    # nearest we come to the independent check; measured (fifteenth session, 16 views): means 0.795 and
    # 0.768, lowest 0.738 and 0.721 (8 views: 0.785 and 0.757). Issue #18's bar of 0.85 is not met there.
    for name in brain[0]["as_shown"]["outside_generators"]:
        aucs = [entry["as_shown"]["outside_generators"][name]["roc_auc"] for entry in brain]
        assert np.mean(aucs) > 0.74 and min(aucs) > 0.67, name


def test_gallery_shows_the_worst_held_out_mistakes(record, folds):
    from PIL import Image

    from model.evaluate import GALLERY_COUNT, GALLERY_PATH, gallery_picture, worst_mistakes

    false_positives, false_negatives = worst_mistakes(record["folds"])
    assert len(false_positives) == len(false_negatives) == GALLERY_COUNT
    # Worst first: the most confident wrong answers.
    fp_scores = [float(caption.split()[0]) for _, _, caption in false_positives]
    fn_scores = [float(caption.split()[0]) for _, _, caption in false_negatives]
    assert fp_scores == sorted(fp_scores, reverse=True) and min(fp_scores) > 0.5
    assert fn_scores == sorted(fn_scores) and max(fn_scores) < 0.5
    assert all(mask is not None and mask.any() for _, mask, _ in false_negatives)
    picture = np.asarray(Image.open(GALLERY_PATH).convert("RGB"))
    np.testing.assert_array_equal(picture, gallery_picture(record["folds"]))

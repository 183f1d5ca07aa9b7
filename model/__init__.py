"""ConvScope's small CNN that answers "does this patch contain a lesion?", trained by its own engine.

>>> from model import load
>>> classifier = load()
>>> classifier.input_size
64

``load()`` reads the shipped weights (model/weights.npz); it needs neither pydicom-data nor any
deep-learning framework. Training (``python -m model.train``) and evaluation
(``python -m model.evaluate``) need pydicom-data for the training scans.
"""

from __future__ import annotations

import functools
from pathlib import Path

from model.network import CLASS_NAMES, SYMMETRY_VIEWS, Architecture, Classifier, LayerOutput

WEIGHTS_PATH = Path(__file__).resolve().parent / "weights.npz"

__all__ = ["CLASS_NAMES", "WEIGHTS_PATH", "Architecture", "Classifier", "LayerOutput", "load"]


@functools.lru_cache(maxsize=4)
def _load_cached(path):
    return Classifier.from_file(path, views=SYMMETRY_VIEWS)


def load(path=None):
    """The trained classifier.

    Parameters
    ----------
    path : str or Path, optional
        A weights file written by ``python -m model.train``; default the shipped model/weights.npz.

    Returns
    -------
    Classifier
        Answering from the mean over each patch's 16 views (``views=16``: turned, mirrored and
        inverted; :func:`model.network.symmetry_views`).
        Shared between callers (it keeps no state between calls, so threads may use it at once).
    """
    path = Path(path) if path is not None else WEIGHTS_PATH
    if not path.exists():
        raise FileNotFoundError(f"no classifier weights at {path}; run 'python -m model.train' from the "
                                f"repository root to create them")
    return _load_cached(str(path.resolve()))

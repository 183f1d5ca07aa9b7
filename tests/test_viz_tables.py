"""viz.tables: numbers written out with fixed decimals for st.table."""

import pandas as pd

from viz.tables import fixed_decimals


def test_chosen_columns_are_written_with_rounded_fixed_decimals_and_the_rest_kept():
    frame = pd.DataFrame({"rank": [1, 2, 3], "score": [0.62999999, -1.0, 2671.63015]})
    written = fixed_decimals(frame, 3, ["score"])
    assert list(written["score"]) == ["0.630", "-1.000", "2671.630"]
    assert list(written["rank"]) == [1, 2, 3] and frame["score"][0] == 0.62999999  # the original is left alone


def test_every_column_by_default_and_the_index_kept():
    frame = pd.DataFrame([[0.5, 0.25], [0.126, 1.0]], index=[10, 11], columns=["3", "4"])
    written = fixed_decimals(frame, 2)
    assert written.values.tolist() == [["0.50", "0.25"], ["0.13", "1.00"]]
    assert list(written.index) == [10, 11]

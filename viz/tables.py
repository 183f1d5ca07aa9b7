"""Tables of numbers ready for st.table: each number written with a fixed number of decimals, as text.

pandas' Styler did this before at 30-40 ms per table on every rerun (it rebuilds the frame cell by
cell), a quarter of a click on the detection page; writing the numbers out takes well under 1 ms.
"""


def fixed_decimals(frame, decimals, columns=None):
    """A copy of ``frame`` whose ``columns`` (default: every column) hold their numbers as text with
    ``decimals`` decimals, rounded ("0.630", "-1.000"); other columns are left as they are."""
    written = frame.copy()
    for column in frame.columns if columns is None else columns:
        written[column] = [f"{float(value):.{decimals}f}" for value in frame[column]]
    return written


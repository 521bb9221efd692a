"""The results table is replaced as each trial ends while readers (analysis, sync, a watching test) read it: every
read sees one whole version, never a mix of two."""
import threading

import pandas as pd

from tracking.files import read_parquet, write_parquet


def test_a_table_read_while_it_is_being_replaced_is_always_one_whole_version(tmp_path):
    path = tmp_path / "results.parquet"
    write_parquet(pd.DataFrame({"rows": [1], "text": ["x"]}), path)
    stop = threading.Event()

    def rewrite_with_growing_tables():
        rows = 1
        while not stop.is_set():
            rows = rows % 40 + 1
            write_parquet(pd.DataFrame({"rows": [rows] * rows, "text": ["x" * rows] * rows}), path)

    writer = threading.Thread(target=rewrite_with_growing_tables)
    writer.start()
    try:
        for _ in range(400):  # reading by path (pyarrow's own) fails about every other time under this writer
            frame = read_parquet(path)
            assert len(frame) == frame["rows"].iloc[0]  # a version's own length: whole, and not mixed with another
    finally:
        stop.set()
        writer.join()

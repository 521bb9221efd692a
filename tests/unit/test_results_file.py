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


def test_a_write_that_fails_half_way_leaves_the_old_file_and_no_temporary(tmp_path):
    from tracking.files import replace_atomically, write_text

    path = tmp_path / "summary.md"
    write_text(path, "the table as it was\n")

    def half_then_full_disk(temporary):
        temporary.write_text("the new tab")
        raise OSError(28, "No space left on device")

    try:
        replace_atomically(path, half_then_full_disk)
    except OSError:
        pass
    assert path.read_text() == "the table as it was\n" and sorted(p.name for p in tmp_path.iterdir()) == ["summary.md"]

"""The feature cache hands a run its vectors as one matrix, in the run's order, across shards."""

import numpy as np

from zoo.extraction.cache import FeatureCache


def test_gather_returns_rows_in_the_order_asked_across_shards(tmp_path):
    cache = FeatureCache("key", root=tmp_path)
    cache.add(["a", "b"], np.array([[1, 1], [2, 2]]))
    cache.add(["c"], np.array([[3, 3]]))

    reopened = FeatureCache("key", root=tmp_path)
    matrix = reopened.gather(["c", "a", "c", "b"])

    assert matrix.dtype == np.float32
    assert matrix.tolist() == [[3, 3], [1, 1], [3, 3], [2, 2]]
    assert reopened.gather([]).shape == (0, 2)


def test_opening_keeps_an_index_not_the_vectors(tmp_path):
    cache = FeatureCache("key", root=tmp_path)
    cache.add([f"d{i}" for i in range(100)], np.ones((100, 8)))

    reopened = FeatureCache("key", root=tmp_path)

    assert len(reopened) == 100
    assert all(isinstance(place, tuple) for place in reopened.rows.values())
    assert not any(isinstance(value, np.ndarray) for value in vars(reopened).values())


def test_vectors_added_in_this_process_are_gathered_too(tmp_path):
    cache = FeatureCache("key", root=tmp_path, width=3)
    cache.add(["x"], np.array([[0.5, 0.25, 0.125]]))

    assert "x" in cache and "y" not in cache
    assert cache.gather(["x"]).tolist() == [[0.5, 0.25, 0.125]]

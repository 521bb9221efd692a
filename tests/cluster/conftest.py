import pytest

from tests.cluster.ray_nodes import LocalRayCluster


@pytest.fixture
def ray_cluster(tmp_path):
    """A multi-node Ray cluster of this test's own `ray start` processes (see ray_nodes.py), ended with the test."""
    cluster = LocalRayCluster(tmp_path / "cluster")
    yield cluster
    cluster.shutdown()

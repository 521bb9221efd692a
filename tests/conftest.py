import pytest


@pytest.fixture(scope="module")
def local_ray():
    """A real local Ray for one test module (2 CPUs, as on the CI machine), shut down afterwards."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()

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


@pytest.fixture
def one_thread():
    """torch on one thread for the test: inductor's compiled CPU kernels spin their OpenMP threads, so with two
    threads on a 2-core machine that is busy with anything else a compiled test runs ~10× slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

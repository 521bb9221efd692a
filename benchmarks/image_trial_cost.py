#!/usr/bin/env python
"""What an image trial costs, side by side on one machine: Soft-IntroVAE training steps per second (warm-up and
introspective stage) for the protocol's networks, and Inception-v3 FID features per second, so the protocol's
budget (220 epochs, FID on 50,000 images) can be read off for this device.

  python benchmarks/image_trial_cost.py [--device cuda] [--seconds 20]

Prints one markdown table: dataset, stage, steps/s, images/s, and the minutes an epoch (or a 50k-image FID) takes.
Synthetic images of the right shape (the cost does not depend on the pixels); no dataset files needed.
"""
import argparse
import time

import torch

from models.objectives import warmup_loss
from trainables.introvae_images import ImageIntroVaeRun
from trainables.metrics.fid import InceptionFeatures

EPOCH_IMAGES = {"mnist": 60_000, "cifar10": 50_000}


def steps_per_second(run, stage: str, seconds: float) -> float:
    run.model.train()
    x = torch.rand(run.config["batch_size"], *run.images.shape[1:], device=run.device)
    run.step = 0 if stage == "warm-up" else run.num_vae_steps + 1
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or done < 2:
        if stage == "warm-up":
            loss, _ = warmup_loss(run.model, x, run.objective, run.generator)
            run._step(run.optimisers, loss)
        else:
            run.train_iteration()
        done += 1
    if run.device.type == "cuda":
        torch.cuda.synchronize()
    return done / (time.perf_counter() - start)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seconds", type=float, default=20.0, help="per measurement (default 20)")
    parser.add_argument("--prior", default="mog", choices=("standard", "mog", "vamp"))
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    print(f"device {device}, torch threads {torch.get_num_threads()}, prior {args.prior} (K = 10)\n")
    print("| dataset | measured | per second | minutes per epoch (or per 50k-image FID) |")
    print("|---|---|---:|---:|")
    for dataset in ("mnist", "cifar10"):
        config = {"dataset": dataset, "prior": args.prior, "num_components": 10, "num_vae": 1, "epochs": 2}
        shape = (1, 28, 28) if dataset == "mnist" else (3, 32, 32)
        pixels = torch.randint(0, 256, (512, *shape), dtype=torch.uint8)  # any pixels cost the same
        run = ImageIntroVaeRun(config, device, data=(pixels, torch.zeros(512, dtype=torch.int64)))
        config = run.config  # with the dataset's batch size, channels and latent size filled in
        steps_per_epoch = EPOCH_IMAGES[dataset] // config["batch_size"]
        for stage in ("warm-up", "introspective"):
            rate = steps_per_second(run, stage, args.seconds)
            print(f"| {dataset} | {stage} steps (batch {config['batch_size']}) | {rate:.3g} | "
                  f"{steps_per_epoch / rate / 60:.3g} |", flush=True)
        inception = InceptionFeatures(device)
        images = torch.rand(64, *run.images.shape[1:], device=device)
        inception(images[:8])  # warm-up
        start = time.perf_counter()
        inception(images)
        per_second = len(images) / (time.perf_counter() - start)
        print(f"| {dataset} | Inception features (FID) | {per_second:.3g} images | "
              f"{50_000 / per_second / 60:.3g} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

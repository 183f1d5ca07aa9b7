"""Benchmark of one classifier training step (forward + backward, batch 32) against PyTorch on the CPU.

Run by hand: ``python -m bench.training`` (``--quick`` for fewer repeats, ``--batch 64`` for another
batch size). Both sides run the shipped architecture (model/train.py ARCHITECTURE) with the same
weights and the same batch on the same 2 threads; the loss and the gradients are compared first, so
the times are for the same arithmetic. Prints medians, the ratio and a per-layer breakdown of the
engine's step; it never fails, it reports. Without PyTorch (optional: ``pip install torch==2.13.0``)
the comparison is printed as skipped.
"""

from __future__ import annotations

import argparse
import collections
import platform
import time

import numpy as np

THREADS = 2


def median_ms(function, repeats):
    """Median wall time of ``function()`` in ms after two untimed calls (Numba and torch warm up)."""
    function()
    function()
    times = []
    for _ in range(repeats):
        tick = time.perf_counter()
        function()
        times.append(time.perf_counter() - tick)
    return float(np.median(times)) * 1e3


def engine_step(network, batch, labels):
    """One training step's arithmetic with ConvScope's engine: returns the loss and the gradients."""
    from model.layers import softmax_cross_entropy

    logits, trace = network.forward(batch, keep=True)
    loss, d_logits = softmax_cross_entropy(logits, labels)
    return loss, network.backward(trace, d_logits)


def torch_step_function(network, batch, labels):
    """The same step in PyTorch (float32, autograd); returns a function giving (loss, gradients)."""
    import torch
    import torch.nn.functional as functional

    architecture = network.architecture
    params = {key: torch.tensor(value, requires_grad=True) for key, value in network.parameters().items()}
    inputs = torch.tensor(batch)
    targets = torch.tensor(labels)
    first_padding = architecture.kernel_sizes[0] // 2

    def step():
        for param in params.values():
            param.grad = None
        h = inputs
        for stage, pool in enumerate(architecture.pool_after, start=1):
            weight, bias = params[f"conv{stage}.weight"], params[f"conv{stage}.bias"]
            if stage == 1:
                h = functional.conv2d(functional.pad(h, (first_padding,) * 4, mode="reflect"), weight, bias)
            else:
                h = functional.conv2d(h, weight, bias, padding=architecture.kernel_sizes[stage - 1] // 2)
            h = functional.relu(h)
            if pool:
                h = functional.max_pool2d(h, 2)
        h = h.amax(dim=(2, 3)) if architecture.global_pool == "max" else h.mean(dim=(2, 3))
        loss = functional.cross_entropy(h @ params["dense.weight"] + params["dense.bias"], targets)
        loss.backward()
        return loss.item(), {key: param.grad.numpy() for key, param in params.items()}

    return step


def engine_breakdown(network, batch, labels, repeats):
    """Milliseconds per step spent in each layer's forward and backward pass."""
    from model.layers import softmax_cross_entropy

    totals = collections.defaultdict(float)
    for _ in range(repeats):
        x = batch
        caches = []
        for name, layer in network.layers:
            tick = time.perf_counter()
            x, cache = layer.forward(x)
            totals[f"{name} forward"] += time.perf_counter() - tick
            caches.append(cache)
        _, d_out = softmax_cross_entropy(x, labels)
        for (name, layer), cache in zip(reversed(network.layers), reversed(caches)):
            tick = time.perf_counter()
            d_out, _ = layer.backward(cache, d_out)
            totals[f"{name} backward"] += time.perf_counter() - tick
    return {key: value * 1e3 / repeats for key, value in totals.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.training", description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--quick", action="store_true", help="5 repeats instead of 30")
    args = parser.parse_args(argv)
    repeats = 5 if args.quick else 30

    import numba

    from model.network import Network
    from model.train import ARCHITECTURE

    numba.set_num_threads(THREADS)
    network = Network(ARCHITECTURE, seed=0)
    rng = np.random.default_rng(0)
    batch = rng.random((args.batch, 1, ARCHITECTURE.input_size, ARCHITECTURE.input_size), dtype=np.float32)
    labels = rng.integers(0, 2, args.batch)
    parameter_count = sum(value.size for value in network.parameters().values())
    print(f"Training step, forward + backward, batch {args.batch}, {parameter_count} parameters, "
          f"{THREADS} threads, {platform.processor() or platform.machine()}")

    engine_ms = median_ms(lambda: engine_step(network, batch, labels), repeats)
    print(f"  ConvScope engine: {engine_ms:8.1f} ms per step ({engine_ms / args.batch:.2f} ms per patch)")

    try:
        import torch
    except ImportError:
        print("  PyTorch: skipped (not installed; optional: pip install torch==2.13.0)")
        torch = None
    if torch is not None:
        torch.set_num_threads(THREADS)
        step = torch_step_function(network, batch, labels)
        engine_loss, engine_grads = engine_step(network, batch, labels)
        torch_loss, torch_grads = step()
        first = torch_grads["conv1.weight"]
        torch_grads["conv1.weight"] = first - first.mean(axis=(1, 2, 3), keepdims=True)  # zero-sum kernels
        worst = max(float(np.abs(engine_grads[key] - torch_grads[key]).max() / (np.abs(torch_grads[key]).max() + 1e-12))
                    for key in torch_grads)
        print(f"  same numbers: loss {engine_loss:.6f} vs {torch_loss:.6f}, largest relative gradient difference {worst:.1e}")
        torch_ms = median_ms(step, repeats)
        print(f"  PyTorch {torch.__version__}: {torch_ms:8.1f} ms per step")
        print(f"  ratio engine / PyTorch: {engine_ms / torch_ms:.2f} (below 1: the engine is faster)")

    print("  engine, per layer (ms per step):")
    for key, value in sorted(engine_breakdown(network, batch, labels, max(3, repeats // 3)).items(),
                             key=lambda item: -item[1]):
        if value >= 0.05:
            print(f"    {key:24s} {value:7.2f}")


if __name__ == "__main__":
    main()

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
import os
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
            if name == "conv1":  # as in Network.backward: the input patch needs no gradient
                layer.backward(cache, d_out, input_gradient=False)
            else:
                d_out, _ = layer.backward(cache, d_out)
            totals[f"{name} backward"] += time.perf_counter() - tick
    return {key: value * 1e3 / repeats for key, value in totals.items()}


def _torch_child(path, repeats):
    """In a fresh process: time the PyTorch step on the arrays in ``path`` and save its loss and gradients.

    A separate process, because two OpenMP runtimes in one process (Numba's and PyTorch's) make each
    other's threads wait; a user of either library has only one. OMP_WAIT_POLICY=PASSIVE as the engine
    sets it (without it, PyTorch's spinning threads run 5-10x slower on a busy 2-core machine), and
    glibc keeps freed memory for reuse, as on the engine's side.
    """
    import torch

    from kernels._config import keep_freed_memory
    from model.network import Architecture, Network

    torch.set_num_threads(THREADS)
    keep_freed_memory()  # the same malloc settings as the engine's side
    stored = np.load(path)
    architecture = Architecture(**{key.removeprefix("architecture."): (tuple(stored[key].tolist()) if stored[key].ndim
                                                                       else stored[key].item())
                                   for key in stored.files if key.startswith("architecture.")})
    params = {key: stored[key] for key in stored.files if "." in key and not key.startswith(("architecture.", "input"))}
    network = Network(architecture, params)
    step = torch_step_function(network, stored["inputs"], stored["labels"])
    loss, grads = step()
    milliseconds = median_ms(step, repeats)
    np.savez(path, loss=loss, milliseconds=milliseconds, version=torch.__version__,
             **{f"grad.{key}": value for key, value in grads.items()})


def _compare_with_torch(network, batch, labels, repeats):
    import importlib.util
    import os
    import subprocess
    import sys
    import tempfile
    from dataclasses import asdict

    if importlib.util.find_spec("torch") is None:
        print("  PyTorch: skipped (not installed; optional: pip install torch==2.13.0)")
        return None
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "step.npz")
        np.savez(path, inputs=batch, labels=labels, **network.parameters(),
                 **{f"architecture.{key}": np.asarray(value) for key, value in asdict(network.architecture).items()})
        environment = dict(os.environ, OMP_WAIT_POLICY=os.environ.get("OMP_WAIT_POLICY", "PASSIVE"))
        subprocess.run([sys.executable, "-c", f"from bench.training import _set_threads, _torch_child; "
                        f"_set_threads({THREADS}); _torch_child({path!r}, {repeats})"],
                       check=True, env=environment, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        result = np.load(path)
        torch_loss, torch_ms = float(result["loss"]), float(result["milliseconds"])
        torch_grads = {key.removeprefix("grad."): result[key] for key in result.files if key.startswith("grad.")}
        version = str(result["version"])
    engine_loss, engine_grads = engine_step(network, batch, labels)
    first = torch_grads["conv1.weight"]
    torch_grads["conv1.weight"] = first - first.mean(axis=(1, 2, 3), keepdims=True)  # zero-sum kernels
    worst = max(float(np.abs(engine_grads[key] - torch_grads[key]).max() / (np.abs(torch_grads[key]).max() + 1e-12))
                for key in torch_grads)
    print(f"  same numbers: loss {engine_loss:.6f} vs {torch_loss:.6f}, largest relative gradient difference {worst:.1e}")
    print(f"  PyTorch {version} (own process): {torch_ms:8.1f} ms per step")
    return torch_ms


def _set_threads(count):
    """Both libraries on ``count`` threads (the torch child reads THREADS from its command line)."""
    global THREADS
    THREADS = count


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.training", description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--quick", action="store_true", help="5 repeats instead of 30")
    parser.add_argument("--threads", type=int, default=THREADS, help=f"threads for both libraries (default {THREADS})")
    args = parser.parse_args(argv)
    _set_threads(args.threads)
    repeats = 5 if args.quick else 30

    import numba

    from kernels._config import keep_freed_memory, machine_to_ourselves
    from model.network import Network
    from model.train import ARCHITECTURE

    numba.set_num_threads(THREADS)
    keep_freed_memory()  # as model.train does
    network = Network(ARCHITECTURE, seed=0)
    rng = np.random.default_rng(0)
    batch = rng.random((args.batch, 1, ARCHITECTURE.input_size, ARCHITECTURE.input_size), dtype=np.float32)
    labels = rng.integers(0, 2, args.batch)
    parameter_count = sum(value.size for value in network.parameters().values())
    from kernels._warm import cpu_model

    print(f"Training step, forward + backward, batch {args.batch}, {parameter_count} parameters, "
          f"{THREADS} threads, {cpu_model()}, load average {os.getloadavg()[0]:.1f}")

    # Engine before and after PyTorch: on a shared machine the load changes while we measure.
    # Both cores for every call worth it, as model.train runs its steps.
    with machine_to_ourselves():
        engine_before = median_ms(lambda: engine_step(network, batch, labels), repeats)
        torch_ms = _compare_with_torch(network, batch, labels, repeats)
        engine_after = median_ms(lambda: engine_step(network, batch, labels), repeats)
    engine_ms = min(engine_before, engine_after)
    print(f"  ConvScope engine: {engine_ms:8.1f} ms per step ({engine_ms / args.batch:.2f} ms per patch; "
          f"{engine_before:.1f} before and {engine_after:.1f} after the PyTorch run)")
    if torch_ms is not None:
        print(f"  ratio engine / PyTorch: {engine_ms / torch_ms:.2f} (below 1: the engine is faster)")

    print("  engine, per layer (ms per step):")
    with machine_to_ourselves():
        breakdown = engine_breakdown(network, batch, labels, max(3, repeats // 3))
    for key, value in sorted(breakdown.items(), key=lambda item: -item[1]):
        if value >= 0.05:
            print(f"    {key:24s} {value:7.2f}")


if __name__ == "__main__":
    main()

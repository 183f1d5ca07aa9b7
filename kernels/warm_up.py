"""Command line: ``python -m kernels.warm_up`` loads or compiles every jitted kernel and prints the seconds."""

from __future__ import annotations

from kernels._warm import warm_up


def main() -> None:
    """Warm the kernels up and print how long it took."""
    seconds = warm_up()
    print(f"kernels ready in {seconds:.2f} s")


if __name__ == "__main__":
    main()

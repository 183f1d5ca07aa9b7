"""Command line: ``python -m kernels.warm_up`` loads or compiles every jitted kernel and prints the seconds."""

from kernels._warm import main

if __name__ == "__main__":
    main()

"""``python -m bench [--quick]``: run every benchmark and write bench/results/latest.*."""

from bench.run import main

if __name__ == "__main__":
    main()

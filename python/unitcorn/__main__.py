"""``python -m unitcorn``: the same as the console script."""
from unitcorn import main

if __name__ == "__main__":
    main()

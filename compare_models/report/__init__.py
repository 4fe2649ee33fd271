"""The staged output directory, the CSV/JSON/NPZ/PNG writers and the sweep report."""

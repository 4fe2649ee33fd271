"""One function per job (simulate, train, reconstruct, compare, sweep), each run from a config."""

"""One function per job (simulate, train, reconstruct, convert, compare, sweep), each run from
a config object; ``sweep_step`` runs one step of a sweep cell in its own process."""

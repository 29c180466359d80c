"""The training engine: run specs and the run store, tensors of a spec, stacked ensembles, sweeps, worker pool, Dask
executor, and the one-run reference loop."""

"""The companion's tooling: run the notebooks, cache, commit figures, keep the manifest and the table of figures.

Science modules never import from here; this package imports the science wing only for the parameter schemas
(`dgnlib.params`, `dgnlib.schemas`) and, as data, the hash table of `dgnlib/data/hashes.py`.
"""

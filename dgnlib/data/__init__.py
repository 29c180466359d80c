"""The data files on disk: verified reading and fetching, and their known hashes."""

"""stylecomp's tests, a package per package they test; helpers are imported as ``tests.<module>``."""

"""The benchmark of identity-enricher (`make bench`): not part of the package or the tests."""

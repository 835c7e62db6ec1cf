"""The shell of identity-enricher: the Faust app, topics, the batch loop, Redis, commands."""

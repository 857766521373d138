"""The actors: supervisor, one batch actor per batch, a bounded pool of image actors."""

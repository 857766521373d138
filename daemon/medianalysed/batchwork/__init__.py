"""The work of one batch, apart from the actor that drives it (`actors/batch.py`).

Each module owns one concern and knows nothing of actors: `enumeration` lists the input into the
state store, `retries` decides what an attempt's outcome becomes, `finalising` fixes the counts
and writes the outbox in slices, `disposing` archives, deletes or keeps the input, `salvage`
ends the images of a batch whose actor kept crashing, `parking` holds a batch the disk refused
a write until the retry, `livestatus` writes the live `status.json`.
"""

"""The work of one batch, apart from the actor that drives it (`actors/batch.py`).

Each module owns one concern and holds no actor state: `enumeration` lists the input into the
state store, `retries` decides what an attempt's outcome becomes, `finalising` fixes the counts
and writes the status documents, `disposing` archives, deletes or keeps the input, `salvage`
ends the images of a batch whose actor kept crashing.
"""

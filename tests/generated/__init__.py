"""Generated whole-batch inputs and the invariant every batch must keep (issue 15 point 9)."""

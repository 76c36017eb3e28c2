"""``make drill``: the failure drills an operator runs before going live, on
a stack of their own (docs/drills.md)."""

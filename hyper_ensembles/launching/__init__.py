"""How many independent runs get trained: the local launcher and the Ray launcher."""

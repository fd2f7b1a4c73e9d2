"""The revisions of the twin's relational stores, oldest first (`twin db revision MESSAGE` writes the next one)."""

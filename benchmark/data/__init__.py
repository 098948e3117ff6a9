"""The task data on disk: checking it against its pinned checksums, and fetching what is missing."""
